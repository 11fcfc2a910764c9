"""The joint-attention edit in the host: the `optimized_attention_override` every attention call of a
joint-attention model (Flux.1, Flux.2, Chroma, SD3/SD3.5, Qwen-Image, Z-Image / Lumina 2; their sites and hooks
in host/joint_models.py) goes through while the edit samples, and the edit plan it applies. ComfyUI's own
hooks only; no model class or forward touched.

Every attention call reaches the override with q, k, v: [B, H, N, D] (heads first, post-RoPE,
`skip_reshape=True`: Flux) or [B, N, H*D] (SD3, whose v is [B, N, H, D]), over N = text + image tokens.
The override reads from `transformer_options` which block the call belongs to (`block_type` /
`block_index`: Flux, Chroma, Qwen-Image set them, SD3's block wrapper adds them, NextDiT's count of its
joint calls names them where the model does not), the call's text token count
(`TEXT_TOKENS_KEY`) and, where the family records it, its image token count (`IMAGE_TOKENS_KEY`: a call
of any other length, such as the image-only second attention of an MMDiT-X block, is not a joint call),
the rows from `cond_or_uncond` as the UNet path, and calls the core's joint edit (p2p_core/joint.py) on
the host's kernel, or the previous override where another pack put one.

An edit node's plan (EditPlan) becomes a JointPlan (p2p_core/joint_plan.py): the target's image-token q
and k take the source's in the blocks the family picks for `self_layers`, while `cross_replace` (from
`cross_start`) covers the step, and there its image queries read the source's text keys through the edit's
token mapper (AttentionReplace's word swap, AttentionRefine's alignment: each target token the source token
it maps to, a token of a swap that changes the token count the first of the span, a token only the target
has its own key, a special token the mapper leaves out and a model's own text padding the source's at the
same position); the re-weight factors of the target's text positions (Flux: T5; SD3: its CLIP and its T5
part; Qwen-Image, Z-Image: their LLM's; 1 on a model's own text padding) scale its image->text weights in
that window. `self_replace` has no role.

The map observers (LocalBlend's and AttentionMapRecorder's recorders, EditState.observers) see the calls of
the blocks the family chose for maps (`observed`), before the edit: a p2p_core/joint_maps.py JointMapCall,
the image->text maps of the prompts' word positions on the image token grid (`IMAGE_GRID_KEY`, recorded by
the family's hook: the first h * w image tokens, before a model's padding or reference images' tokens; the
context's own text tokens, `CONTEXT_TOKENS_KEY`, where the model pads them), by the host's kernel, or by
explicit softmax on the reference path.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import torch

from ..p2p_core.attention import Attend
from ..p2p_core.edits import EditPlan
from ..p2p_core.joint import JointLayout, fused_joint_attention, reference_joint_attention
from ..p2p_core.joint_maps import JointMapCall
from ..p2p_core.joint_plan import Block, JointPlan
from ..p2p_core.schedules import Window
from .errors import UserError
from .state import RUN_KEY, EditRun
from .unet import cond_chunk_starts, row_layout

OVERRIDE_KEY = "optimized_attention_override"
"""ComfyUI's `transformer_options` key of the function every attention kernel call goes through (wrap_attn)."""
TEXT_TOKENS_KEY = "p2p_text_tokens"
"""`transformer_options` key of the text token count of the joint calls (set by the family's hook)."""
IMAGE_TOKENS_KEY = "p2p_image_tokens"
"""`transformer_options` key of the image token count of the joint calls, where the family's hook records it
(SD3's block wrapper); absent, any call longer than the text is taken for a joint call (Flux)."""
IMAGE_GRID_KEY = "p2p_image_grid"
"""`transformer_options` key of the (h, w) grid of the model call's image tokens (set by the family's hook)."""
CONTEXT_TOKENS_KEY = "p2p_context_tokens"
"""`transformer_options` key of the context's own token count, where the model pads the text tokens of its
joint calls beyond it (NextDiT pads them to a multiple of 32): the padding takes no re-weight factor."""
CALLS_KEY = "p2p_joint_calls"
"""`transformer_options` key of a counter of the joint calls of one model call, where the model labels none of
its blocks (NextDiT on ComfyUI 0.3.75): the n-th joint call is block ("double", n)."""
KIND = "joint"
"""The one kind of attention the joint families patch: every joint call of their blocks."""


def _uniform(values: list[torch.Tensor]) -> float | None:
    """The one value every tensor of `values` holds, None where they differ."""
    flat = torch.cat([v.reshape(-1) for v in values])
    return float(flat[0]) if bool((flat == flat[0]).all()) else None


def joint_plan(plan: EditPlan, injected: frozenset[Block]) -> JointPlan:
    """The EditPlan of an edit node as the joint edit of a model whose `injected` blocks take the source's
    image q/k (the family's reading of `self_layers`).

    The window is every position's cross-attention window (one for all: per-word windows have no meaning
    when the image tokens take the source's q/k); text_weights [T, L] the targets' per-position re-weight
    factors (L: the prompts' common text length), None where all are 1."""
    if not plan.targets:
        return JointPlan(0, frozenset(), Window(0.0, 0.0))
    start = _uniform([t.start for t in plan.targets])
    end = _uniform([t.end for t in plan.targets])
    if start is None or end is None:
        raise UserError(
            "word_schedule: per-word windows do not apply to joint-attention models (Flux, SD3, Qwen-Image, ...): "
            "the edit replaces the target's image-token queries and keys, not words' maps; leave word_schedule empty"
        )
    weights = torch.stack([t.weight for t in plan.targets])
    window = Window(start, end)
    text_weights = None if bool((weights == 1).all()) else weights
    sources = torch.stack([text_sources(t.mapper, t.injected) for t in plan.targets])
    return JointPlan(len(plan.targets), injected, window, text_weights, weight_window=window, text_sources=sources)


def text_sources(mapper: torch.Tensor, injected: torch.Tensor) -> torch.Tensor:
    """[L] long, L = lcm(Ls, Lt): the source context position whose key each target context position's
    image queries read, from the edit's mapper [Ls, Lt] and injected [Lt]: the source token its column maps
    (the first of a span), the same position where the mapper maps none (a special token), -1 (its own key)
    for a token only the target has. ComfyUI repeats the shorter context to L: target position p is token
    p % Lt, read against the source copy that holds p."""
    ls, lt = mapper.shape
    positions = torch.arange(math.lcm(ls, lt))
    token = positions % lt
    mapped = positions // ls * ls + mapper.argmax(0)[token]  # the (first) source token of the token's column
    unmapped = (mapper.amax(0) <= 0)[token]  # a special token the mapper leaves out (SD3's CLIP padding)
    sources = torch.where(unmapped, positions, mapped)
    return torch.where(injected[token] > 0, sources, -1)


def tiled(plan: JointPlan, text: int, context: int | None = None) -> JointPlan:
    """The plan with its per-position tensors over a context of `context` tokens (ComfyUI repeats a context
    to the common length of the batched conds) and the call's `text` tokens (the model's own padding
    after the context; `context` None: `text`, no padding): the [T, L] weights tiled (each copy of a token
    takes its factor), padded with 1; the [T, L] text sources tiled copy by copy, the padding read from the
    source's own padding."""
    context = text if context is None else context
    changes = {}
    for name in ("text_weights", "text_sources"):
        value = getattr(plan, name)
        if value is None:
            continue
        length = value.shape[1]
        if context % length:
            raise ValueError(f"the model call has {context} context tokens, not a multiple of the prompts' {length}")
        copies = value.tile(1, context // length)
        if name == "text_weights":
            changes[name] = torch.nn.functional.pad(copies, (0, text - context), value=1.0)
        else:
            offsets = torch.arange(context) // length * length
            copies = torch.where(copies >= 0, copies + offsets, copies)
            padding = torch.arange(context, text).expand(copies.shape[0], -1)
            changes[name] = torch.cat((copies, padding), dim=1)
    return replace(plan, **changes)


class JointAttentionPatch:
    """The `optimized_attention_override` of a joint-attention model clone: edits the calls of a P2P run,
    hands every other call (and the kernel calls of the edit) to the override it wraps, or the kernel."""

    def __init__(
        self, plan: JointPlan, flipped: frozenset[Block], inner: Any = None, observed: frozenset[Block] = frozenset()
    ) -> None:
        self.plan = plan
        self.flipped = flipped
        """Blocks whose calls hold [image, text] (Flux's `flipped_img_txt`); every other call is [text, image]."""
        self.inner = inner
        self.observed = observed
        """Blocks whose calls the map observers see (the family's `map_blocks`; empty without observers)."""
        self._by_text: dict[tuple[int, int | None], JointPlan] = {}

    def plan_for(self, text: int, context: int | None = None) -> JointPlan:
        """The plan for a call of `text` text tokens, `context` of them the context's (`tiled`; once per
        length)."""
        if self.plan.text_weights is None and self.plan.text_sources is None:
            return self.plan
        if (text, context) not in self._by_text:
            self._by_text[text, context] = tiled(self.plan, text, context)
        return self._by_text[text, context]

    def __call__(self, func, *args: Any, **kwargs: Any) -> torch.Tensor:
        def kernel(*call_args: Any, **call_kwargs: Any) -> torch.Tensor:
            if self.inner is not None:
                return self.inner(func, *call_args, **call_kwargs)
            return func(*call_args, **call_kwargs)

        options = kwargs.get("transformer_options") or {}
        run: EditRun | None = options.get(RUN_KEY)
        text = options.get(TEXT_TOKENS_KEY)
        if run is None or text is None:  # outside a run of the edit, or a call the family's hook did not see
            return kernel(*args, **kwargs)
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        heads_first = kwargs.get("skip_reshape", False)
        tokens = q.shape[2] if heads_first else q.shape[1]
        image = options.get(IMAGE_TOKENS_KEY)
        if not 0 < text < tokens or (image is not None and tokens != text + image):
            return kernel(*args, **kwargs)  # not a joint call over the context and the image
        block = (options.get("block_type"), options.get("block_index"))
        if block[1] is None and CALLS_KEY in options:
            block = ("double", next(options[CALLS_KEY]))
        starts = cond_chunk_starts(options, q.shape[0], run.state.prompts.rows)
        run.count(KIND, starts, q.shape[0])
        observe = bool(starts) and block in self.observed and bool(run.state.observers)
        if not observe and (not starts or not self.plan.targets):
            return kernel(*args, **kwargs)
        step = run.step(options)
        plan = self.plan_for(text, options.get(CONTEXT_TOKENS_KEY))
        terms = plan.terms(block, *step, text, q.device, q.dtype) if self.plan.targets else None
        if terms is None and not observe:
            return kernel(*args, **kwargs)
        if not heads_first:  # [B, N, H*D] (SD3's v: [B, N, H, D]) -> [B, H, N, D]
            q, k, v = (t.reshape(*t.shape[:2], heads, -1).transpose(1, 2) for t in (q, k, v))
        layout = JointLayout.of_call(tokens, text, text_first=block not in self.flipped)
        kernel_kwargs = {**kwargs, "skip_reshape": True, "skip_output_reshape": False}
        kernel_kwargs.pop("heads", None)

        def attend(q_: torch.Tensor, k_: torch.Tensor, v_: torch.Tensor) -> torch.Tensor:
            return kernel(q_, k_, v_, heads, *args[4:], **kernel_kwargs)

        if observe:
            reference = run.state.reference
            grid, context = options.get(IMAGE_GRID_KEY), options.get(CONTEXT_TOKENS_KEY)
            self.observe(run, q, k, None if reference else attend, layout, grid, context, step, starts)
        if terms is None:  # observed only: the call as it was
            return kernel(*args, **kwargs)
        rows = row_layout(tuple(starts), plan.targets)
        if run.state.reference:
            out = reference_joint_attention(q, k, v, rows, layout, terms).to(q.dtype)
        else:
            out = fused_joint_attention(q, k, v, attend, rows, layout, terms)
        if kwargs.get("skip_output_reshape", False):
            return out.unflatten(-1, (heads, -1)).transpose(1, 2)
        return out

    @staticmethod
    def observe(
        run: EditRun,
        q: torch.Tensor,
        k: torch.Tensor,
        attend: Attend | None,
        layout: JointLayout,
        grid: tuple[int, int] | None,
        context: int | None,
        step: tuple[int, int],
        starts: list[int],
    ) -> None:
        """Hand the run's map observers this call (q, k [B, H, N, D], before the edit; `starts` its conditional
        chunks' first rows) as a JointMapCall of the grid's image tokens (the first h * w: a model's padding
        and the reference images' tokens of Flux Kontext / Qwen-Image-Edit follow them) and the `context`'s
        text tokens (None: all); attend None: the explicit reference. A call with no grid recorded, or fewer
        image tokens than it, is not observed."""
        if grid is None or grid[0] * grid[1] > layout.image:
            return
        state = run.state
        call = JointMapCall(q, k, attend, layout, state.prompts, tuple(grid), step, starts, context=context)
        for observer in state.observers:
            observer.observe_cross(call)
