"""Edited attention: the fused form used while sampling, and the explicit reference.

Shapes: q [B, Nq, H*D], k and v [B, Nk, H*D] (projected, heads folded into the last dim, as
ComfyUI's attention kernels take them). A `RowLayout` says which rows of the batch are edited:
every conditional chunk is a source row followed by its T target rows. `attend(q, k, v) ->
[B, Nq, H*D]` is the host's own attention kernel; every row of the output comes from it, so an
unedited row is bit-identical to its twin in an unpatched run.

Host cost: on a GPU at these batch sizes every small operation costs a launch, so the fused path
uses as few as the maths allows: indexed gathers of whole batches (index tensors built once per
batch arrangement), the value edit of every row as one batched product prepared once per step
(`prepare_cross`), and the direct term as extra rows of the same kernel call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from .edits import CrossTerms

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class BatchRows:
    """A call's batch rows as index tensors on its device (built once per layout, batch size and device).

    sources [B]: each row's source row (the row itself where it is not a target);
    targets, target_sources, target_index [R]: the target rows in `RowLayout.pairs` order, their source
    rows and their target 0..T-1;
    extended [B + R]: `sources`, then `targets`: the query/key rows of one kernel call that computes the
    direct term too (its R last rows attend with the targets' own queries and keys);
    own_extended [B + R]: 0..B-1, then `targets`: the value rows of that call;
    chunks: the target rows of each conditional chunk as a slice of the batch (their `targets` in order).
    """

    batch: int
    chunks: tuple[slice, ...]
    sources: torch.Tensor
    targets: torch.Tensor
    target_sources: torch.Tensor
    target_index: torch.Tensor
    extended: torch.Tensor
    own_extended: torch.Tensor


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

    @cached_property
    def _rows(self) -> dict[tuple[int, torch.device], BatchRows]:
        return {}

    def rows(self, batch: int, device: torch.device) -> BatchRows:
        """The BatchRows of a call of `batch` rows on `device`, built once (one host-to-device copy)."""
        key = (batch, device)
        if key not in self._rows:
            pairs = self.pairs()
            sources = list(range(batch))
            for source, target, _ in pairs:
                sources[target] = source
            columns = [list(column) for column in zip(*pairs, strict=True)] if pairs else [[], [], []]
            source_rows, targets, index = columns
            parts = [sources, targets, source_rows, index, sources + targets, list(range(batch)) + targets]
            flat = torch.tensor([i for part in parts for i in part], dtype=torch.long).to(device)
            chunks = tuple(slice(start + 1, start + 1 + self.targets) for start in self.starts)
            self._rows[key] = BatchRows(batch, chunks, *flat.split([len(part) for part in parts]))
        return self._rows[key]


@dataclass(frozen=True, eq=False)
class CrossCall:
    """One step's cross-attention edit of one batch arrangement, ready for the kernel (`cross_call`).

    delta [B (+R), Nk, Nk] or None: the value edit, delta @ V with V = v[rows.own_extended] (the first B
    rows: v itself): mapper diag(c) on the target rows, diag(d) on the R direct-term rows, I on every other
    row (a product by I is exact, so those rows keep their values bit for bit, unless CUDA runs fp32
    products in TF32); None where no value changes. The same product as mapper diag(c) V itself, so an
    identity edit of a repeated (long) conditioning rounds its target as before.
    direct: whether the direct term (refine, re-weight, outside a window) rides in the call as R rows.
    """

    rows: BatchRows
    delta: torch.Tensor | None
    direct: bool


def prepare_cross(layout: RowLayout, terms: CrossTerms, batch: int, device: torch.device) -> CrossCall:
    """The CrossCall of `terms` for a call of `batch` rows, built at the step's first layer and kept in
    `terms.prepared` for every other layer of the step."""
    rows = layout.rows(batch, device)
    if rows not in terms.prepared:
        delta = None
        if terms.needs_fold or terms.needs_direct:
            count = batch + (len(rows.targets) if terms.needs_direct else 0)
            nk = terms.c.shape[1]
            eye = torch.eye(nk, device=terms.c.device, dtype=terms.c.dtype)
            fold = terms.fold if terms.fold is not None else torch.diag_embed(terms.c)
            delta = eye.expand(count, nk, nk).clone()
            delta[rows.targets] = fold[rows.target_index]
            if terms.needs_direct:
                delta[batch:] = torch.diag_embed(terms.d)[rows.target_index]
        terms.prepared[rows] = CrossCall(rows, delta, terms.needs_direct)
    return terms.prepared[rows]


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

    No attention map is formed: the edit is folded into the target rows' values. The two terms have
    different queries and keys, so they are not one softmax (concatenating the key sets would normalise
    them together): the direct term rides in the same kernel call as R more rows of the batch, with the
    targets' own queries and keys, and is added onto the target rows after. `prepare_cross` then
    `cross_call`.

    chunk: None calls the kernel once over every query (fewest operations: where launching small
    operations is the cost, CUDA). A number calls it on that many queries at a time and writes each
    chunk's output into its spent query rows, so the output of the whole call is never allocated (where
    memory is the cost, CPU). Every query attends the same keys either way.

    attend_rows(rows): the kernel of the direct term on the target rows `rows` of one conditional chunk
    alone, called apart from the whole batch's call (a host's patch may need to be told that a call
    holds those rows only); None: the direct term rides in the whole batch's call.
    """
    return cross_call(q, k, v, attend, prepare_cross(layout, terms, q.shape[0], q.device), chunk, attend_rows)


def cross_call(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attend: Attend,
    call: CrossCall,
    chunk: int | None = None,
    attend_rows: Callable[[slice], Attend] | None = None,
) -> torch.Tensor:
    """fused_cross_attention's tensor work alone (what a torch.compile graph traces). With one chunk the
    edit adds: a gather of the queries and of the keys, with a direct term a gather of the values, with
    a value edit one batched product, with a direct term a slice and one indexed sum. Writes into q
    only with query chunks. With `attend_rows` the direct term is one more kernel call per conditional
    chunk, on its target rows' own queries and keys and their values diag(d) V_tgt (delta's R last rows)."""
    rows = call.rows
    in_call = call.direct and attend_rows is None
    gather = rows.extended if in_call else rows.sources
    keys = k.index_select(0, gather)
    values = v.index_select(0, rows.own_extended) if in_call else v
    own: list[tuple[Attend, slice, torch.Tensor, torch.Tensor]] = []
    if call.direct and not in_call:
        own_values = torch.bmm(call.delta[rows.batch :], v.index_select(0, rows.targets))
        per_chunk = own_values.split(rows.chunks[0].stop - rows.chunks[0].start)
        own = [
            (attend_rows(chunk_rows), chunk_rows, k[chunk_rows], values)
            for chunk_rows, values in zip(rows.chunks, per_chunk, strict=True)
        ]
        delta = call.delta[: rows.batch]
    else:
        delta = call.delta
    if delta is not None:
        values = torch.bmm(delta, values)
    return _into_chunks(q, keys, values, attend, gather, rows, in_call, chunk, own)


def fused_self_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attend: Attend, layout: RowLayout, chunk: int | None = None
) -> torch.Tensor:
    """Self-attention injection, A_tgt := A_src: SDPA(Q_src, K_src, V_tgt). `chunk` as in
    fused_cross_attention. `self_call` on the layout's rows."""
    return self_call(q, k, v, attend, layout.rows(q.shape[0], q.device), chunk)


def self_call(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attend: Attend, rows: BatchRows, chunk: int | None = None
) -> torch.Tensor:
    """The target rows' queries and keys gathered from their sources (two operations). With query chunks
    the keys are copied in place (no second key tensor of the layer's size) and q is written into."""
    if chunk is None:
        keys = k.index_select(0, rows.sources)
    else:
        keys = k.index_copy_(0, rows.targets, k.index_select(0, rows.target_sources))
    return _into_chunks(q, keys, v, attend, rows.sources, rows, False, chunk)


def _into_chunks(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attend: Attend,
    gather: torch.Tensor,
    rows: BatchRows,
    direct: bool,
    chunk: int | None,
    own: list[tuple[Attend, slice, torch.Tensor, torch.Tensor]] = (),
) -> torch.Tensor:
    """The kernel over query chunks of q[gather] with the edited keys and values k, v [len(gather), ...];
    with `direct`, the rows after the first B are the direct term, added onto the target rows; `own`
    (kernel, target rows, their own keys, their diag(d) values) adds a direct term called apart."""
    step = chunk or q.shape[1]
    for first in range(0, q.shape[1], step):
        queries = q if chunk is None else q[:, first : first + step]
        terms = [(target_rows, kernel(queries[target_rows], keys, values)) for kernel, target_rows, keys, values in own]
        out = attend(queries.index_select(0, gather), k, v)
        if direct:
            out = out[: rows.batch].index_add_(0, rows.targets, out[rows.batch :])
        for target_rows, term in terms:
            out[target_rows] += term
        if chunk is None:
            return out
        q[:, first : first + step] = out
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
