"""The UNet attention family (SD1.x, SD2.x, SDXL): attn1/attn2 replace patches on every transformer block.

A family is an `AttentionFamily`: where its attention sites are on a model, and how a patch goes on one.
The patch (`AttentionPatch`) is the processor of the site: it reads the edit state and calls the core's
self/cross attention edits; a second family (joint attention) brings its own sites and processor.

The patches go on at sample time, on the run's copy of the options (`UNetAttention.install`), never on
the model a node puts out: other packs' nodes, before or after the P2P nodes, see only their own patches
(and update them in place), and the pack wraps whatever patch ComfyUI would call at each site when the
run starts, under whichever key the other pack used.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention

from ..p2p_core.attention import (
    Attend,
    BatchRows,
    CrossCall,
    RowLayout,
    cross_call,
    prepare_cross,
    query_chunk,
    reference_cross_attention,
    reference_self_attention,
    self_call,
)
from ..p2p_core.edits import CrossTerms
from ..p2p_core.maps import CrossCallMaps, layer_grid
from .state import RUN_KEY, EditRun

KINDS = {"attn1": "self-attention (attn1)", "attn2": "cross-attention (attn2)"}
"""ComfyUI's replace-patch names of a transformer block's self (attn1) and cross (attn2) attention, and what
each is to a reader."""


ATTENTION_OVERRIDE = "optimized_attention_override"
"""Where another pack puts a function around ComfyUI's attention kernels in transformer_options (it is
called with the call's options, and may expect them to describe the call's batch)."""


def cond_chunk_starts(options: dict, batch: int, rows: int) -> list[int] | None:
    """First batch row of every conditional chunk of this call (its source row), or None when the
    call's batch is not made of chunks of `rows` (a call the edit does not concern)."""
    chunks = options.get("cond_or_uncond") or [0]
    if batch % len(chunks) or batch // len(chunks) != rows:
        return None
    return [j * rows for j, kind in enumerate(chunks) if kind == 0]


@cache
def row_layout(starts: tuple[int, ...], targets: int) -> RowLayout:
    """One RowLayout per batch arrangement, built once (every layer of every step asks for it)."""
    return RowLayout(starts, targets)


def row_options(options: dict, rows: slice, batch: int) -> dict:
    """The attention options of a call on the rows `rows` of a batch of `batch` rows, all of them
    conditional (the target rows of one chunk): `cond_or_uncond`, the shapes' batch size and per-row
    `sigmas` describe that sub-batch, as another pack's patch expects."""
    sub = {**options, "cond_or_uncond": [0]}
    for name in ("activations_shape", "original_shape"):
        if name in options:
            sub[name] = [len(range(*rows.indices(batch))), *options[name][1:]]
    sigmas = options.get("sigmas")
    if isinstance(sigmas, torch.Tensor) and sigmas.ndim and sigmas.shape[0] == batch:
        sub["sigmas"] = sigmas[rows]
    return sub


class AttentionPatch:
    """An attn1/attn2 replace patch for one transformer block; wraps the patch ComfyUI would call there."""

    def __init__(self, kind: str, inner: Any = None, cpu_query_chunks: bool = True) -> None:
        """cpu_query_chunks: on the CPU, run the edited kernel over query chunks (memory); False runs the
        one-call path CUDA runs (benchmarks/dispatch.py counts its operations on the CPU)."""
        self.kind = kind
        self.inner = inner
        self.cpu_query_chunks = cpu_query_chunks

    def attend(self, options: dict) -> Attend:
        """The attention this site computes without the edit: the wrapped patch, else the host's kernel."""
        if self.inner is not None:
            return lambda q, k, v: self.inner(q, k, v, options)
        heads = options["n_heads"]
        precision = options.get("attn_precision")
        return lambda q, k, v: optimized_attention(
            q, k, v, heads, attn_precision=precision, transformer_options=options
        )

    def attend_rows(self, options: dict, batch: int) -> Callable[[slice], Attend]:
        """rows -> the attention of the target rows `rows` alone (the direct term of refine / re-weight),
        with options describing that sub-batch. A wrapped patch may add a term of its own (an adapter's
        extra tokens); the edit's whole-batch call already carries it, so it is taken out of the direct
        term: patch(q, k, v) - patch(q, k, 0), exact for a patch affine in v."""

        def for_rows(rows: slice) -> Attend:
            attend = self.attend(row_options(options, rows, batch))
            if self.inner is None:
                return attend
            return lambda q, k, v: attend(q, k, v) - attend(q, k, torch.zeros_like(v))

        return for_rows

    @torch.compiler.disable
    def prepare(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: dict
    ) -> tuple[RowLayout, CrossTerms | None, CrossCall | BatchRows] | None:
        """The host side of one call, run eagerly even inside a torch.compile graph (the step lookup reads
        a sigma, the run counts calls, observers keep running sums, terms are cached per step): None where
        this call attends as unedited, else (layout, the step's CrossTerms or None, the CrossCall or
        BatchRows for the kernel). Compiled code then only sees tensors and flags that change at window
        edges, not at every step."""
        run: EditRun | None = options.get(RUN_KEY)
        if run is None:  # outside a sampling run of the edit (the edit's outer-sample wrapper starts one)
            return None
        state = run.state
        starts = cond_chunk_starts(options, q.shape[0], state.prompts.rows)
        run.count(self.kind, starts, q.shape[0])
        if starts is None:
            return None
        step = run.step(options)
        latent = options.get("original_shape")
        latent_grid = tuple(latent[-2:]) if latent else None
        if self.kind == "attn2" and state.observers and (grid := layer_grid(latent_grid, q.shape[1])) is not None:
            factor, h, w = grid
            call = CrossCallMaps(q, k, options["n_heads"], state.prompts, factor, (h, w), step, starts)
            for observer in state.observers:
                observer.observe_cross(call)
        if not starts or not state.plan.targets:
            return None
        layout = row_layout(tuple(starts), state.prompts.rows - 1)
        if self.kind == "attn2":
            terms = run.cross_terms(step, k.shape[1], v)
            if terms is None:
                return None
            return layout, terms, prepare_cross(layout, terms, q.shape[0], q.device)
        grid = layer_grid(latent_grid, q.shape[1])
        if grid is None or not state.plan.self_active(*step, grid[0]):
            return None
        return layout, None, layout.rows(q.shape[0], q.device)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: dict) -> torch.Tensor:
        attend = self.attend(options)
        edit = self.prepare(q, k, v, options)
        if edit is None:
            return attend(q, k, v)
        layout, terms, prepared = edit
        heads = options["n_heads"]
        reference = options[RUN_KEY].state.reference
        # On the CPU, memory is the cost: query chunks written into the spent queries. Only around
        # the host's kernel, since another pack's patch may expect every query (a spatial mask).
        chunks = self.cpu_query_chunks and self.inner is None and q.device.type == "cpu"
        chunk = query_chunk(q) if chunks else None
        if self.kind == "attn2":
            if reference:
                return reference_cross_attention(q, k, v, heads, layout, terms).to(q.dtype)
            # The direct term rides in the batch's kernel call as more rows, unless another pack's patch or
            # attention override would see that call: it expects the rows its options describe.
            bare = self.inner is None and ATTENTION_OVERRIDE not in options
            attend_rows = None if bare else self.attend_rows(options, q.shape[0])
            return cross_call(q, k, v, attend, prepared, chunk, attend_rows)
        if reference:
            return reference_self_attention(q, k, v, heads, layout).to(q.dtype)
        return self_call(q, k, v, attend, prepared, chunk)


def transformer_blocks(model) -> list[tuple[str, int, int]]:
    """(block name, block id, transformer index) of every transformer block of a UNet."""
    unet = model.model.diffusion_model
    groups = [("input", getattr(unet, "input_blocks", [])), ("output", getattr(unet, "output_blocks", []))]
    middle = getattr(unet, "middle_block", None)
    keys = []
    for name, blocks in groups + [("middle", [middle] if middle is not None else [])]:
        for number, block in enumerate(blocks):
            for layer in block:
                if isinstance(layer, SpatialTransformer):
                    keys.extend((name, number, i) for i in range(len(layer.transformer_blocks)))
    return keys


class UNetAttention:
    """The UNet family as an AttentionFamily: its sites are the transformer blocks' attn1/attn2."""

    name = "UNet cross/self attention (SD1.x, SD2.x, SDXL)"
    kinds = KINDS

    def sites(self, model) -> list[tuple[str, int, int]]:
        """The transformer blocks of `model` (none when it is not a UNet with them)."""
        return transformer_blocks(model)

    def install(self, options: dict, sites: list[tuple[str, int, int]]) -> None:
        """Put an AttentionPatch on attn1 and attn2 of every site in `options`, the transformer options of
        one sampling run (the dicts it changes are replaced by copies, the model's own stay as they are).

        Each wraps the patch ComfyUI would call at the site without the pack: the one under the site's
        (block, id, transformer index) key, else the one under its block's (block, id) key (IPAdapter_plus
        on SD1.5); ComfyUI looks the 3-part key up first, so the pack's patch there is the one called."""
        replaces = dict(options.get("patches_replace", {}))
        for kind in KINDS:
            patches = dict(replaces.get(kind, {}))
            for block, number, index in sites:
                found = patches.get((block, number, index), patches.get((block, number)))
                inner = found.inner if isinstance(found, AttentionPatch) else found
                patches[(block, number, index)] = AttentionPatch(kind, inner)
            replaces[kind] = patches
        options["patches_replace"] = replaces
