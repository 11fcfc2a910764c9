"""The UNet attention family (SD1.x, SD2.x, SDXL): attn1/attn2 replace patches on every transformer block.

A family is an `AttentionFamily`: where its attention sites are on a model, and how a patch goes on one.
The patch (`AttentionPatch`) is the processor of the site: it reads the edit state and calls the core's
self/cross attention edits; a second family (joint attention) brings its own sites and processor.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

import torch
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention

from ..p2p_core.attention import (
    RowLayout,
    fused_cross_attention,
    fused_self_attention,
    query_chunk,
    reference_cross_attention,
    reference_self_attention,
)
from .state import RUN_KEY, EditRun

KINDS = ("attn1", "attn2")
"""ComfyUI's replace-patch names of a transformer block's self (attn1) and cross (attn2) attention."""


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


class AttentionPatch:
    """An attn1/attn2 replace patch for one transformer block; wraps whatever patch was there."""

    def __init__(self, kind: str, inner: Any = None) -> None:
        self.kind = kind
        self.inner = inner

    def attend(self, options: dict):
        if self.inner is not None:
            return lambda q, k, v: self.inner(q, k, v, options)
        heads = options["n_heads"]
        precision = options.get("attn_precision")
        return lambda q, k, v: optimized_attention(
            q, k, v, heads, attn_precision=precision, transformer_options=options
        )

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: dict) -> torch.Tensor:
        attend = self.attend(options)
        run: EditRun | None = options.get(RUN_KEY)
        if run is None:  # outside a sampling run of the edit (the edit's outer-sample wrapper starts one)
            return attend(q, k, v)
        state = run.state
        starts = cond_chunk_starts(options, q.shape[0], state.prompts.rows)
        if starts is None:
            return attend(q, k, v)
        step = run.step(options)
        if self.kind == "attn2" and state.observers:
            latent = options.get("original_shape")
            grid = tuple(latent[-2:]) if latent else None
            for observer in state.observers:
                observer.observe_cross(q, k, options["n_heads"], grid, step, starts)
        if not starts or not state.plan.targets:
            return attend(q, k, v)
        layout = row_layout(tuple(starts), state.prompts.rows - 1)
        heads = options["n_heads"]
        # On the CPU, memory is the cost: query chunks written into the spent queries. Only around
        # the host's kernel, since another pack's patch may expect every query (a spatial mask).
        chunk = query_chunk(q) if self.inner is None and q.device.type == "cpu" else None
        if self.kind == "attn2":
            terms = run.cross_terms(step, k.shape[1], v)
            if terms is None:
                return attend(q, k, v)
            if state.reference:
                return reference_cross_attention(q, k, v, heads, layout, terms).to(q.dtype)
            return fused_cross_attention(q, k, v, attend, layout, terms, chunk)
        shape = options.get("original_shape") or options.get("activations_shape")
        factor = math.sqrt(shape[-1] * shape[-2] / q.shape[1]) if shape else 1.0
        if not state.plan.self_active(*step, factor):
            return attend(q, k, v)
        if state.reference:
            return reference_self_attention(q, k, v, heads, layout).to(q.dtype)
        return fused_self_attention(q, k, v, attend, layout, chunk)


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

    def sites(self, model) -> list[tuple[str, int, int]]:
        """The transformer blocks of `model` (none when it is not a UNet with them)."""
        return transformer_blocks(model)

    def install(self, patched, sites: list[tuple[str, int, int]]) -> None:
        """Put an AttentionPatch on attn1 and attn2 of every site of the clone `patched`, wrapping the
        patch another pack put there (and replacing the pack's own from an earlier P2P node)."""
        replaces = patched.model_options["transformer_options"].get("patches_replace", {})
        for kind in KINDS:
            for key in sites:
                existing = replaces.get(kind, {}).get(key)
                inner = existing.inner if isinstance(existing, AttentionPatch) else existing
                patched.set_model_patch_replace(AttentionPatch(kind, inner), kind, *key)
