"""The joint-attention families as AttentionFamily objects: which models are of them (their sites), which of
their blocks `self_layers` names, and the hook that tells the override (host/joint.py) the block and the
token counts of each call. Both put one JointAttentionPatch, as the `optimized_attention_override`, on the
transformer options of each sampling run of the edit; what differs by family is here, in its object.

- Flux.1 (and the models on Flux's blocks: Flux.2 of the same class, Chroma of its own): they set `block_type`
  / `block_index` themselves; a DIFFUSION_MODEL wrapper records the context's token count (the text of every
  joint call).
- SD3 / SD3.5 (MMDiT, MMDiT-X): SD3 sets no block, so a `patches_replace["dit"]` wrapper on each joint block
  ("double_block", i) puts the block, its text and its image token counts in a copy of the block's
  transformer options and runs the block (or the replace another pack put on that key, which it wraps).
  The image count lets the override tell the joint call from the image-only second call of an MMDiT-X
  block (`x_block_self_attn`), which it leaves as it is.
- Qwen-Image: one kind of block, two-stream over [text, image] as Flux's double blocks; it labels its blocks
  ("double", i) itself, and Flux's DIFFUSION_MODEL wrapper records the text length.
- Z-Image and Lumina 2 (NextDiT): a context refiner (text alone) and a noise refiner (image alone), then
  single-stream layers over [text, image], each padded to a multiple of `pad_tokens_multiple`. A
  DIFFUSION_MODEL wrapper records the padded text and image counts (only a call of both is a joint call: the
  refiners' stay whole), the context's own count (the padding takes no re-weight factor and no word's map) and
  a counter of the joint calls, which names the layer where the model labels none (ComfyUI 0.3.75; 0.8 labels
  them). The layers attend with no mask: the padding tokens are keys of every softmax, as the maps read them.

With map observers (LocalBlend, AttentionMapRecorder), every family also records the grid of the image
tokens of each model call (`record_image_grid`, an APPLY_MODEL wrapper: the latent's side over the
model's patch size) and names the blocks whose image->text maps the observers average (`map_blocks`).
"""

from __future__ import annotations

import inspect
import itertools
import math
from typing import Any, NamedTuple

import comfy.patcher_extension
import torch
from comfy.ldm.chroma.model import Chroma
from comfy.ldm.flux.model import Flux
from comfy.ldm.lumina.model import NextDiT
from comfy.ldm.modules.diffusionmodules.mmdit import MMDiT
from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel

from ..p2p_core.joint_plan import Block
from .joint import (
    CALLS_KEY,
    CONTEXT_TOKENS_KEY,
    IMAGE_GRID_KEY,
    IMAGE_TOKENS_KEY,
    KIND,
    OVERRIDE_KEY,
    TEXT_TOKENS_KEY,
    JointAttentionPatch,
    joint_plan,
)
from .state import STATE_KEY

WRAPPER_KEY = "prompt_to_prompt_joint"
"""The key of the families' wrappers among a run's DIFFUSION_MODEL and APPLY_MODEL wrappers."""
MAP_BLOCKS = 5
"""How many blocks' image->text maps the map observers average (Shin et al. 2025 average five blocks)."""
DIT_BLOCK = "double_block"
"""The first part of the `patches_replace["dit"]` key of SD3's joint block i: ("double_block", i)."""


class JointSite(NamedTuple):
    """One attention site of a joint-attention model: its block and the order of its tokens."""

    block: Block
    text_first: bool
    """Whether the block's calls hold [text, image] (all but Flux's `flipped_img_txt` double blocks)."""


class JointAttention:
    """What the joint-attention families share: the override for a run, from the edit plan and the sites."""

    name: str
    kinds: dict[str, str]

    def sites(self, model) -> list[JointSite]:
        """The model's joint-attention sites, in the order its blocks run (none for a model of another family)."""
        raise NotImplementedError

    def injected_blocks(self, sites: list[JointSite], min_factor: int) -> frozenset[Block]:
        """The blocks whose target image q/k take the source's for the `self_layers` choice (its UNet factor:
        4 coarse, 2 medium, 1 all)."""
        raise NotImplementedError

    def install_hooks(self, options: dict, sites: list[JointSite]) -> None:
        """Put the hook that records each call's block and token counts in `options` (changed dicts copied)."""
        raise NotImplementedError

    def map_blocks(self, sites: list[JointSite]) -> frozenset[Block]:
        """The blocks whose image->text maps the map observers average: the MAP_BLOCKS blocks around the
        middle of the model, in the order its blocks run (all of them on a model of fewer). Shin et al. 2025
        find MM-DiT's maps noisy, and average a few blocks (five) and smooth them; the first blocks' maps
        have not yet found the objects, the last ones attend to detail, the middle ones mark the words'
        regions (Flux.1: single blocks 7-11 of 19 double + 38 single; SD3 medium: joint blocks 9-13 of 24)."""
        first = max(0, (len(sites) - MAP_BLOCKS) // 2)
        return frozenset(site.block for site in sites[first : first + MAP_BLOCKS])

    def install(self, options: dict, sites: list[JointSite]) -> None:
        """Put the JointAttentionPatch, as the attention override, and the family's hooks in `options`, the
        transformer options of one sampling run (the dicts it changes are replaced by copies, the model's own
        stay as they are). The patch wraps the override ComfyUI would call without the pack (another pack's)."""
        existing = options.get(OVERRIDE_KEY)
        inner = existing.inner if isinstance(existing, JointAttentionPatch) else existing
        state = options[STATE_KEY]
        plan = joint_plan(state.plan, self.injected_blocks(sites, state.plan.self_min_factor))
        flipped = frozenset(site.block for site in sites if not site.text_first)
        observed = self.map_blocks(sites) if state.observers else frozenset()
        options[OVERRIDE_KEY] = JointAttentionPatch(plan, flipped, inner, observed)
        self.install_hooks(options, sites)
        if observed:
            add_run_wrapper(options, comfy.patcher_extension.WrappersMP.APPLY_MODEL, record_image_grid)


def add_run_wrapper(options: dict, kind: str, wrapper: Any) -> None:
    """Put `wrapper`, under WRAPPER_KEY, among the `kind` wrappers of one run's transformer `options` (the
    dicts it changes replaced by copies, the model's own left as they are)."""
    wrappers = dict(options.get("wrappers", {}))
    of_kind = dict(wrappers.get(kind, {}))
    of_kind[WRAPPER_KEY] = [wrapper]
    wrappers[kind] = of_kind
    options["wrappers"] = wrappers


def record_image_grid(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The map observers' APPLY_MODEL wrapper: puts the grid of the image tokens of this model call, (h, w) =
    (ceil(H / p), ceil(W / p)) for a latent [B, C, H, W] and the diffusion model's patch size p (Flux and
    SD3 pad the latent to whole patches), in the call's `transformer_options`, then runs the model."""
    bound = inspect.signature(executor.original).bind(*args, **kwargs).arguments  # once per model call
    options = bound.get("transformer_options")
    patch = executor.class_obj.diffusion_model.patch_size
    if options is not None:
        height, width = bound["x"].shape[-2:]
        options[IMAGE_GRID_KEY] = (math.ceil(height / patch), math.ceil(width / patch))
    return executor(*args, **kwargs)


def record_text_tokens(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    """Flux's DIFFUSION_MODEL wrapper: puts the context's token count (the text tokens of every joint call of
    this model call) in the call's `transformer_options`, then runs the model."""
    bound = inspect.signature(executor.original).bind(*args, **kwargs).arguments  # once per model call
    options = bound.get("transformer_options")
    context = bound.get("context")
    if options is not None and context is not None:
        options[TEXT_TOKENS_KEY] = context.shape[1]
    return executor(*args, **kwargs)


class FluxAttention(JointAttention):
    """Flux.1 dev/schnell (and Flux.2, of the same class): its double (two-stream) and single blocks."""

    name = "joint attention (Flux.1 dev/schnell, Flux.2)"
    kinds = {KIND: "joint attention (Flux double/single blocks)"}
    diffusion_class: type = Flux
    """The diffusion model class of the family's models."""

    def sites(self, model) -> list[JointSite]:
        """A JointSite for ("double", i) and ("single", i) of every block of a Flux model."""
        flux = model.model.diffusion_model
        if not isinstance(flux, self.diffusion_class):
            return []
        double = [
            JointSite(("double", i), not getattr(b, "flipped_img_txt", False)) for i, b in enumerate(flux.double_blocks)
        ]
        return double + [JointSite(("single", i), True) for i in range(len(flux.single_blocks))]

    def injected_blocks(self, sites: list[JointSite], min_factor: int) -> frozenset[Block]:
        """coarse: the double blocks; medium: those and the first half of the single blocks; all: every block
        (on Flux.1's 19 + 38 blocks: the first third, the first two thirds, all)."""
        double = [site.block for site in sites if site.block[0] == "double"]
        single = [site.block for site in sites if site.block[0] == "single"]
        if min_factor >= 4:
            return frozenset(double)
        if min_factor >= 2:
            return frozenset(double + single[: len(single) // 2])
        return frozenset(double + single)

    model_wrapper = staticmethod(record_text_tokens)
    """The DIFFUSION_MODEL wrapper that records the token counts of each model call."""

    def install_hooks(self, options: dict, sites: list[JointSite]) -> None:
        """`model_wrapper` as a DIFFUSION_MODEL wrapper of the run (Flux sets the block itself)."""
        add_run_wrapper(options, comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, self.model_wrapper)


class ChromaAttention(FluxAttention):
    """Chroma (and Chroma Radiance): Flux's double and single blocks, modulated by its own approximator."""

    name = "joint attention (Chroma)"
    kinds = {KIND: "joint attention (Chroma double/single blocks)"}
    diffusion_class = Chroma


def early_blocks(sites: list[JointSite], min_factor: int) -> frozenset[Block]:
    """The early blocks, where Shin et al. 2025 find the layout is set: coarse the first third of the blocks,
    medium the first two thirds, all every block (at least one block each)."""
    blocks = [site.block for site in sites]
    share = {4: 1 / 3, 2: 2 / 3}.get(min_factor, 1.0)
    return frozenset(blocks[: max(1, math.ceil(share * len(blocks)))])


class QwenImageAttention(FluxAttention):
    """Qwen-Image (and Qwen-Image-Edit): its transformer blocks, each a joint call over [text, image] (the
    image tokens followed by those of the reference latents, where the edit model has them)."""

    name = "joint attention (Qwen-Image)"
    kinds = {KIND: "joint attention (Qwen-Image transformer blocks)"}

    def sites(self, model) -> list[JointSite]:
        """A JointSite for ("double", i) of every transformer block of a Qwen-Image model."""
        qwen = model.model.diffusion_model
        if not isinstance(qwen, QwenImageTransformer2DModel):
            return []
        return [JointSite(("double", i), True) for i in range(len(qwen.transformer_blocks))]

    def injected_blocks(self, sites: list[JointSite], min_factor: int) -> frozenset[Block]:
        """early_blocks: coarse the first third of the 60 blocks, medium two thirds, all every block."""
        return early_blocks(sites, min_factor)


def record_nextdit_tokens(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
    """NextDiT's DIFFUSION_MODEL wrapper: puts in the call's `transformer_options` the text and image token
    counts of its joint calls (the context's L and the image's ceil(h / p) * ceil(w / p) patches, each padded
    up to a multiple of the model's `pad_tokens_multiple`), L itself and a fresh counter of the joint calls,
    then runs the model. x: [B, C, h, w]; context: [B, L, features]."""
    bound = inspect.signature(executor.original).bind(*args, **kwargs).arguments
    options = bound.get("transformer_options") or bound.get("kwargs", {}).get("transformer_options")
    if options is not None:
        dit = executor.class_obj
        multiple = dit.pad_tokens_multiple or 1
        height, width = bound["x"].shape[-2:]
        patches = math.ceil(height / dit.patch_size) * math.ceil(width / dit.patch_size)
        context = bound["context"].shape[1]
        options[TEXT_TOKENS_KEY] = math.ceil(context / multiple) * multiple
        options[IMAGE_TOKENS_KEY] = math.ceil(patches / multiple) * multiple
        options[CONTEXT_TOKENS_KEY] = context
        options[CALLS_KEY] = itertools.count()
    return executor(*args, **kwargs)


class NextDiTAttention(FluxAttention):
    """Z-Image and Lumina 2 (NextDiT): its single-stream layers over [text, image], ("double", i)."""

    name = "joint attention (Z-Image / Lumina 2 NextDiT)"
    kinds = {KIND: "joint attention (NextDiT layers)"}
    model_wrapper = staticmethod(record_nextdit_tokens)

    def sites(self, model) -> list[JointSite]:
        """A JointSite for ("double", i) of every layer of a NextDiT model (not its refiners)."""
        dit = model.model.diffusion_model
        if not isinstance(dit, NextDiT):
            return []
        return [JointSite(("double", i), True) for i in range(len(dit.layers))]

    def injected_blocks(self, sites: list[JointSite], min_factor: int) -> frozenset[Block]:
        """early_blocks: coarse the first third of the layers, medium two thirds, all every layer."""
        return early_blocks(sites, min_factor)


class BlockLabel:
    """SD3's `patches_replace["dit"][("double_block", i)]`: runs joint block i (or `inner`, the replace another
    pack put on that key) with transformer options that name the block and its token counts."""

    def __init__(self, index: int, inner: Any = None) -> None:
        self.index = index
        self.inner = inner

    def __call__(self, args: dict, extra: dict) -> dict:
        """args: {"img": [B, image, W], "txt": [B, text, W], "vec", "transformer_options"}; extra:
        {"original_block": the block}. Returns {"img", "txt"} as the block does."""
        options = {
            **args["transformer_options"],
            "block_type": "double",
            "block_index": self.index,
            TEXT_TOKENS_KEY: args["txt"].shape[1],
            IMAGE_TOKENS_KEY: args["img"].shape[1],
        }
        labelled = {**args, "transformer_options": options}
        if self.inner is not None:
            return self.inner(labelled, extra)
        return extra["original_block"](labelled)


class SD3Attention(JointAttention):
    """SD3 / SD3.5 (MMDiT; MMDiT-X with its image-only second attention): its joint blocks, ("double", i)."""

    name = "joint attention (SD3/SD3.5 MMDiT)"
    kinds = {KIND: "joint attention (SD3 joint blocks)"}

    def sites(self, model) -> list[JointSite]:
        """A JointSite for ("double", i) of every joint block of an SD3 model ([text, image] in each)."""
        mmdit = model.model.diffusion_model
        if not isinstance(mmdit, MMDiT):
            return []
        return [JointSite(("double", i), True) for i in range(len(mmdit.joint_blocks))]

    def injected_blocks(self, sites: list[JointSite], min_factor: int) -> frozenset[Block]:
        """early_blocks: coarse the first third of the joint blocks, medium two thirds, all every block."""
        return early_blocks(sites, min_factor)

    def install_hooks(self, options: dict, sites: list[JointSite]) -> None:
        """A BlockLabel on every joint block's `patches_replace["dit"]` key, wrapping the replace found there."""
        replaces = dict(options.get("patches_replace", {}))
        dit = dict(replaces.get("dit", {}))
        for site in sites:
            key = (DIT_BLOCK, site.block[1])
            existing = dit.get(key)
            dit[key] = BlockLabel(site.block[1], existing.inner if isinstance(existing, BlockLabel) else existing)
        replaces["dit"] = dit
        options["patches_replace"] = replaces
