"""Edited attention: the fused form used while sampling, and the explicit reference.

Shapes: q [B, Nq, H*D], k and v [B, Nk, H*D] (projected, heads folded into the last dim, as
ComfyUI's attention kernels take them). A `RowLayout` says which rows of the batch are edited:
every conditional chunk is a source row followed by its T target rows. `attend(q, k, v) ->
[B, Nq, H*D]` is the host's own attention kernel; every row of the output comes from it, so an
unedited row is bit-identical to its twin in an unpatched run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from .edits import CrossTerms

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RowLayout:
    """The edited rows of one attention call: at each of `starts` a source row, then `targets` target rows."""

    starts: tuple[int, ...]
    targets: int

    def pairs(self) -> list[tuple[int, int, int]]:
        """(source row, target row, target index 0..T-1) of every edited row."""
        return [(start, start + 1 + t, t) for start in self.starts for t in range(self.targets)]

    @cached_property
    def slices(self) -> list[tuple[slice, slice]]:
        """(source row, its target rows) of every conditional chunk, as slices of the batch."""
        return [(slice(start, start + 1), slice(start + 1, start + 1 + self.targets)) for start in self.starts]

    def index(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(source_rows, target_rows, target_index) [R] as index tensors (the reference path)."""
        columns = zip(*self.pairs(), strict=True)
        return tuple(torch.tensor(x, device=device, dtype=torch.long).reshape(-1) for x in columns)


def _folded(v: torch.Tensor, terms: CrossTerms) -> torch.Tensor:
    """mapper diag(c) V for the target rows v [T, Nk, H*D] of one chunk."""
    if terms.fold is None:
        return v * terms.c[:, :, None]
    return torch.bmm(terms.fold, v)


def query_chunk(q: torch.Tensor, budget: int = 4 << 20) -> int:
    """Queries per kernel call so that one call's output [B, n, H*D] takes at most `budget` bytes."""
    return max(1, budget // (q.shape[0] * q.shape[2] * q.element_size()))


def fused_cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attend: Attend,
    layout: RowLayout,
    terms: CrossTerms,
    chunk: int | None = None,
    attend_rows: Callable[[slice], Attend] | None = None,
) -> torch.Tensor:
    """new_tgt @ V_tgt = SDPA(Q_src, K_src, mapper diag(c) V_tgt) + SDPA(Q_tgt, K_tgt, diag(d) V_tgt).

    No attention map is formed: the edit is folded into the target rows' values, and the direct
    term (refine, re-weight, outside a window) is a kernel call on the target rows alone. Writes
    into q, k, v (fresh projections owned by the caller's layer).

    chunk: None calls the kernel once over every query (fewest calls: where launching small
    operations is the cost, CUDA). A number calls it on that many queries at a time and writes
    each chunk's output into its spent query rows, so the output of the whole call is never
    allocated (where memory is the cost, CPU). Every query attends the same keys either way.

    attend_rows(rows): the kernel of the direct term, on the target rows `rows` of the batch alone
    (a host may need to be told that the call holds those rows only); `attend` when None.
    """
    targets = layout.slices
    kernel = attend_rows or (lambda rows: attend)
    own = (
        [(kernel(rows), rows, k[rows].clone(), v[rows] * terms.d[:, :, None]) for _, rows in targets]
        if terms.needs_direct
        else []
    )
    for source, rows in targets:
        if terms.needs_fold:
            v[rows] = _folded(v[rows], terms)
        k[rows] = k[source]
    return _into_chunks(q, k, v, attend, targets, own, chunk)


def fused_self_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attend: Attend, layout: RowLayout, chunk: int | None = None
) -> torch.Tensor:
    """Self-attention injection, A_tgt := A_src: SDPA(Q_src, K_src, V_tgt). Writes into q and k;
    `chunk` as in fused_cross_attention."""
    targets = layout.slices
    for source, rows in targets:
        k[rows] = k[source]
    return _into_chunks(q, k, v, attend, targets, [], chunk)


def _into_chunks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attend: Attend,
    targets: list[tuple[slice, slice]],
    own: list[tuple[Attend, slice, torch.Tensor, torch.Tensor]],
    chunk: int | None,
) -> torch.Tensor:
    """The kernel over query chunks, target queries := their source's; `own` (the direct term's kernel,
    target rows, their own keys, diag(d) values) adds the direct term. k and v already hold the edited
    keys/values."""
    step = chunk or q.shape[1]
    for first in range(0, q.shape[1], step):
        cols = slice(first, first + step)
        direct = [(rows, kernel(q[rows, cols], keys, values)) for kernel, rows, keys, values in own]
        for source, rows in targets:
            q[rows, cols] = q[source, cols]
        out = attend(q[:, cols], k, v)
        for rows, term in direct:
            out[rows] += term
        if chunk is None:
            return out
        q[:, cols] = out
    return q


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
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, layout: RowLayout, terms: CrossTerms
) -> torch.Tensor:
    """The paper's formulas on explicit maps (edits.py docstring); float32 output."""
    source_rows, target_rows, target_index = layout.index(q.device)
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
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int, layout: RowLayout
) -> torch.Tensor:
    """A_tgt := A_src on explicit maps; float32 output."""
    source_rows, target_rows, _ = layout.index(q.device)
    maps = attention_maps(q, k, heads)
    maps[target_rows] = maps[source_rows]
    return apply_maps(maps, v, heads)
