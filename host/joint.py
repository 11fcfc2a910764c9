"""The joint-attention family (Flux.1 and the models on Flux's blocks): one `optimized_attention_override`
and one diffusion-model wrapper, ComfyUI's own hooks, put on the transformer options of each sampling run
of the edit (`JointAttention.install`, as the UNet family's patches); no model class or forward touched.

Every attention call of a Flux double or single block reaches the override with q, k, v [B, H, N, D]
(heads first, post-RoPE, `skip_reshape=True`) over N = text + image tokens. The override reads which block
the call belongs to from `transformer_options` (Flux sets `block_type` / `block_index`), the text length
from the diffusion-model wrapper (the context's token count, in `transformer_options[TEXT_TOKENS_KEY]`),
the rows from `cond_or_uncond` as the UNet path, and calls the core's joint edit (p2p_core/joint.py) on
the host's kernel, or the previous override where another pack put one.

An edit node's plan (EditPlan) becomes a JointPlan (p2p_core/joint_plan.py): the target's image-token q
and k take the source's in the blocks `self_layers` names, while `cross_replace` (from `cross_start`)
covers the step; the re-weight factors of the target's T5 positions scale its image->text weights in that
window. No token mapper: AttentionReplace and AttentionRefine edit alike; `self_replace` has no role.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any, NamedTuple

import comfy.patcher_extension
import torch
from comfy.ldm.flux.model import Flux

from ..p2p_core.edits import EditPlan
from ..p2p_core.joint import JointLayout, fused_joint_attention, reference_joint_attention
from ..p2p_core.joint_plan import Block, JointPlan
from ..p2p_core.schedules import Window
from .errors import UserError
from .state import RUN_KEY, STATE_KEY, EditRun
from .unet import cond_chunk_starts, row_layout

OVERRIDE_KEY = "optimized_attention_override"
"""ComfyUI's `transformer_options` key of the function every attention kernel call goes through (wrap_attn)."""
TEXT_TOKENS_KEY = "p2p_text_tokens"
"""`transformer_options` key of the text token count of the model call (set by `record_text_tokens`)."""
WRAPPER_KEY = "prompt_to_prompt_joint"
"""The key of `record_text_tokens` among a run's DIFFUSION_MODEL wrappers."""
KIND = "joint"
KINDS = {KIND: "joint attention (Flux double/single blocks)"}
"""The one kind of attention the family patches: every call of a double or single block."""


def injected_blocks(blocks: list[Block], min_factor: int) -> frozenset[Block]:
    """The blocks whose target image q/k take the source's, by the `self_layers` choice (its UNet factor):
    coarse (4): the double (two-stream) blocks; medium (2): those and the first half of the single blocks;
    all (1): every block."""
    double = [b for b in blocks if b[0] == "double"]
    single = [b for b in blocks if b[0] == "single"]
    if min_factor >= 4:
        return frozenset(double)
    if min_factor >= 2:
        return frozenset(double + single[: len(single) // 2])
    return frozenset(blocks)


def _uniform(values: list[torch.Tensor]) -> float | None:
    """The one value every tensor of `values` holds, None where they differ."""
    flat = torch.cat([v.reshape(-1) for v in values])
    return float(flat[0]) if bool((flat == flat[0]).all()) else None


def joint_plan(plan: EditPlan, blocks: list[Block]) -> JointPlan:
    """The EditPlan of an edit node as the joint edit of a model with these blocks.

    The window is every position's cross-attention window (one for all: per-word windows have no meaning
    when the image tokens take the source's q/k); text_weights [T, L] the targets' per-position re-weight
    factors (L: the prompts' common T5 length), None where all are 1."""
    if not plan.targets:
        return JointPlan(0, frozenset(), Window(0.0, 0.0))
    start = _uniform([t.start for t in plan.targets])
    end = _uniform([t.end for t in plan.targets])
    if start is None or end is None:
        raise UserError(
            "word_schedule: per-word windows do not apply to joint-attention models (Flux): the edit replaces "
            "the target's image-token queries and keys, not words' maps; leave word_schedule empty"
        )
    weights = torch.stack([t.weight for t in plan.targets])
    window = Window(start, end)
    text_weights = None if bool((weights == 1).all()) else weights
    return JointPlan(
        len(plan.targets), injected_blocks(blocks, plan.self_min_factor), window, text_weights, weight_window=window
    )


def tiled_weights(plan: JointPlan, text: int) -> JointPlan:
    """The plan with its [T, L] weights tiled to a call of `text` text tokens (ComfyUI repeats a context
    to the common length of the batched conds; each copy of a token takes its factor)."""
    length = plan.text_weights.shape[1]
    if text % length:
        raise ValueError(f"the model call has {text} text tokens, not a multiple of the prompts' {length}")
    return replace(plan, text_weights=plan.text_weights.tile(1, text // length))


class JointAttentionPatch:
    """The `optimized_attention_override` of a joint-attention model clone: edits the calls of a P2P run,
    hands every other call (and the kernel calls of the edit) to the override it wraps, or the kernel."""

    def __init__(self, plan: JointPlan, flipped: frozenset[Block], inner: Any = None) -> None:
        self.plan = plan
        self.flipped = flipped
        """Blocks whose calls hold [image, text] (Flux's `flipped_img_txt`); every other call is [text, image]."""
        self.inner = inner
        self._by_text: dict[int, JointPlan] = {}

    def plan_for(self, text: int) -> JointPlan:
        """The plan for a call of `text` text tokens (its weights tiled once per length)."""
        if self.plan.text_weights is None:
            return self.plan
        if text not in self._by_text:
            self._by_text[text] = tiled_weights(self.plan, text)
        return self._by_text[text]

    def __call__(self, func, *args: Any, **kwargs: Any) -> torch.Tensor:
        def kernel(*call_args: Any, **call_kwargs: Any) -> torch.Tensor:
            if self.inner is not None:
                return self.inner(func, *call_args, **call_kwargs)
            return func(*call_args, **call_kwargs)

        options = kwargs.get("transformer_options") or {}
        run: EditRun | None = options.get(RUN_KEY)
        text = options.get(TEXT_TOKENS_KEY)
        if run is None or text is None:  # outside a run of the edit, or a call the text-length wrapper did not see
            return kernel(*args, **kwargs)
        q, k, v = args[:3]
        heads = args[3] if len(args) > 3 else kwargs["heads"]
        heads_first = kwargs.get("skip_reshape", False)
        tokens = q.shape[2] if heads_first else q.shape[1]
        if not 0 < text < tokens:  # not a joint call over the context and the image
            return kernel(*args, **kwargs)
        starts = cond_chunk_starts(options, q.shape[0], run.state.prompts.rows)
        run.count(KIND, starts, q.shape[0])
        if not starts or not self.plan.targets:
            return kernel(*args, **kwargs)
        block = (options.get("block_type"), options.get("block_index"))
        step = run.step(options)
        plan = self.plan_for(text)
        terms = plan.terms(block, *step, text, q.device, q.dtype)
        if terms is None:
            return kernel(*args, **kwargs)
        if not heads_first:  # [B, N, H*D] -> [B, H, N, D] views
            q, k, v = (t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (q, k, v))
        layout = JointLayout.of_call(tokens, text, text_first=block not in self.flipped)
        rows = row_layout(tuple(starts), plan.targets)
        kernel_kwargs = {**kwargs, "skip_reshape": True, "skip_output_reshape": False}
        kernel_kwargs.pop("heads", None)
        if run.state.reference:
            out = reference_joint_attention(q, k, v, rows, layout, terms).to(q.dtype)
        else:
            out = fused_joint_attention(
                q, k, v, lambda q_, k_, v_: kernel(q_, k_, v_, heads, *args[4:], **kernel_kwargs), rows, layout, terms
            )
        if kwargs.get("skip_output_reshape", False):
            return out.unflatten(-1, (heads, -1)).transpose(1, 2)
        return out


def record_text_tokens(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The DIFFUSION_MODEL wrapper: puts the context's token count (the text tokens of every joint call of
    this model call) in the call's `transformer_options`, then runs the model."""
    bound = inspect.signature(executor.original).bind(*args, **kwargs).arguments  # once per model call
    options = bound.get("transformer_options")
    context = bound.get("context")
    if options is not None and context is not None:
        options[TEXT_TOKENS_KEY] = context.shape[1]
    return executor(*args, **kwargs)


class JointSite(NamedTuple):
    """One attention site of a joint-attention model: its block and the order of its tokens."""

    block: Block
    text_first: bool
    """Whether the block's calls hold [text, image] (all but Flux's `flipped_img_txt` double blocks)."""


class JointAttention:
    """The joint-attention family as an AttentionFamily: its sites are Flux's double and single blocks."""

    name = "joint attention (Flux.1 dev/schnell)"
    kinds = KINDS

    def sites(self, model) -> list[JointSite]:
        """A JointSite for ("double", i) and ("single", i) of every block of a Flux model (none for any other
        model)."""
        flux = model.model.diffusion_model
        if not isinstance(flux, Flux):
            return []
        double = [
            JointSite(("double", i), not getattr(b, "flipped_img_txt", False)) for i, b in enumerate(flux.double_blocks)
        ]
        return double + [JointSite(("single", i), True) for i in range(len(flux.single_blocks))]

    def install(self, options: dict, sites: list[JointSite]) -> None:
        """Put the JointAttentionPatch, as the attention override, and the wrapper that records the text
        length, as a DIFFUSION_MODEL wrapper, in `options`, the transformer options of one sampling run (the
        wrapper dicts it changes are replaced by copies, the model's own stay as they are).

        The patch wraps the override ComfyUI would call without the pack (another pack's)."""
        existing = options.get(OVERRIDE_KEY)
        inner = existing.inner if isinstance(existing, JointAttentionPatch) else existing
        plan = joint_plan(options[STATE_KEY].plan, [site.block for site in sites])
        flipped = frozenset(site.block for site in sites if not site.text_first)
        options[OVERRIDE_KEY] = JointAttentionPatch(plan, flipped, inner)
        wrappers = dict(options.get("wrappers", {}))
        model_wrappers = dict(wrappers.get(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, {}))
        model_wrappers[WRAPPER_KEY] = [record_text_tokens]
        wrappers[comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL] = model_wrappers
        options["wrappers"] = wrappers
