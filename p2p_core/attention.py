"""Edited attention: the fused form used while sampling, and the explicit reference.

Shapes: q [B, Nq, H*D], k and v [B, Nk, H*D] (projected, heads folded into the last dim, as
ComfyUI's attention kernels take them). `source_rows` and `target_rows` [R] pair every edited
target row of the batch with its source row; `target_index` [R] says which target (0..T-1)
of the plan each row is. `attend(q, k, v) -> [B, Nq, H*D]` is the host's own attention kernel:
calling it once over the whole batch keeps an unedited row bit-identical to its twin.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .edits import CrossTerms

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def fused_cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attend: Attend,
    source_rows: torch.Tensor,
    target_rows: torch.Tensor,
    target_index: torch.Tensor,
    terms: CrossTerms,
) -> torch.Tensor:
    """new_tgt @ V_tgt = SDPA(Q_src, K_src, mapper diag(c) V_tgt) + SDPA(Q_tgt, K_tgt, diag(d) V_tgt).

    No attention map is formed: the edit is folded into the target rows' values. The direct term
    (refine, re-weight, outside a window) is a second kernel call on the target rows alone, so the
    whole batch is never copied. Writes into q, k, v (fresh projections owned by the caller's layer).
    """
    v_target = v[target_rows]
    direct = None
    if terms.needs_direct:
        direct = attend(q[target_rows], k[target_rows], v_target * terms.d[target_index, :, None])
    if terms.needs_fold:
        folded = v_target * terms.c[target_index, :, None]
        if terms.mapper is not None:
            folded = torch.bmm(terms.mapper[target_index], folded)
        v[target_rows] = folded
    q[target_rows] = q[source_rows]
    k[target_rows] = k[source_rows]
    out = attend(q, k, v)
    if direct is not None:
        out.index_add_(0, target_rows, direct)
    return out


def fused_self_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attend: Attend,
    source_rows: torch.Tensor,
    target_rows: torch.Tensor,
) -> torch.Tensor:
    """Self-attention injection, A_tgt := A_src: SDPA(Q_src, K_src, V_tgt). Writes into q and k."""
    q[target_rows] = q[source_rows]
    k[target_rows] = k[source_rows]
    return attend(q, k, v)


def attention_maps(q: torch.Tensor, k: torch.Tensor, heads: int) -> torch.Tensor:
    """softmax(Q K^T / sqrt(D)): [B, H, Nq, Nk], in float32."""
    b, nq, inner = q.shape
    dim = inner // heads
    qh = q.float().reshape(b, nq, heads, dim).transpose(1, 2)
    kh = k.float().reshape(b, k.shape[1], heads, dim).transpose(1, 2)
    return torch.softmax(qh @ kh.transpose(-1, -2) * dim**-0.5, dim=-1)


def apply_maps(maps: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """[B, H, Nq, Nk] @ V [B, Nk, H*D] -> [B, Nq, H*D]."""
    b, nk, inner = v.shape
    vh = v.float().reshape(b, nk, heads, inner // heads).transpose(1, 2)
    return (maps @ vh).transpose(1, 2).reshape(b, maps.shape[2], inner)


def reference_cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    heads: int,
    source_rows: torch.Tensor,
    target_rows: torch.Tensor,
    target_index: torch.Tensor,
    terms: CrossTerms,
) -> torch.Tensor:
    """The paper's formulas on explicit maps (edits.py docstring); float32 output."""
    maps = attention_maps(q, k, heads)
    a, w, inj = (t[target_index, None, None, :].float() for t in (terms.a, terms.weight, terms.injected))
    source_maps = maps[source_rows]
    if terms.mapper is not None:
        source_maps = source_maps @ terms.mapper[target_index, None].float()
    own = maps[target_rows]
    inside = w * (inj * source_maps + (1 - inj) * own)
    maps[target_rows] = a * inside + (1 - a) * own
    return apply_maps(maps, v, heads)


def reference_self_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, source_rows: torch.Tensor, target_rows: torch.Tensor
) -> torch.Tensor:
    maps = attention_maps(q, k, heads)
    maps[target_rows] = maps[source_rows]
    return apply_maps(maps, v, heads)
