"""Puts an edit plan on a ComfyUI model: attention patches on every transformer block and one
outer-sample wrapper that lines the batch up. Everything goes on a clone; nothing global.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any

import comfy.k_diffusion.sampling as k_sampling
import comfy.patcher_extension
import torch
from comfy.ldm.modules.attention import SpatialTransformer, optimized_attention

from ..p2p_core.attention import (
    RowLayout,
    cross_call,
    prepare_cross,
    query_chunk,
    reference_cross_attention,
    reference_self_attention,
    self_call,
)
from ..p2p_core.edits import CrossTerms, EditPlan
from ..p2p_core.schedules import Window, schedule_step
from ..p2p_core.tokens import PromptSet

STATE_KEY = "p2p_edit"
WRAPPER_KEY = "prompt_to_prompt"


class UserError(ValueError):
    """A bad input or graph, reported to the user as is."""


@dataclass
class EditState:
    """What the patches read from `transformer_options[STATE_KEY]` while sampling."""

    prompts: PromptSet
    plan: EditPlan
    reference: bool = False
    observers: tuple = ()
    """Objects with `observe_cross(q, k, options, step, chunk_starts)`, called by every cross-attention
    layer before the edit (local blend and mask recorders). Shared, not copied, when the model is cloned."""
    _sigmas: torch.Tensor | None = field(default=None, repr=False)
    _step: tuple[int, int] = (0, 1)
    _terms: dict[tuple, CrossTerms | None] = field(default_factory=dict, repr=False)

    def __deepcopy__(self, memo: dict) -> EditState:
        # ComfyUI deep-copies model_options on clone; the plan is immutable and the observers are
        # stores that the clone must keep reporting to.
        return replace(self, _sigmas=None, _terms={})

    def with_observer(self, observer) -> EditState:
        return replace(self, observers=(*self.observers, observer), _sigmas=None, _terms={})

    def step(self, options: dict) -> tuple[int, int]:
        """(step, steps) of this model call, computed once per call (one host sync)."""
        sigmas = options.get("sigmas")
        if sigmas is None or "sample_sigmas" not in options:
            return 0, 1
        if sigmas is not self._sigmas:
            self._sigmas = sigmas
            self._step = schedule_step(float(sigmas.max()), options["sample_sigmas"])
        return self._step

    def cross_terms(self, step: tuple[int, int], nk: int, like: torch.Tensor) -> CrossTerms | None:
        key = (step, nk, like.device, like.dtype)
        if key not in self._terms:
            if len(self._terms) > 256:
                self._terms.clear()
            self._terms[key] = self.plan.cross_terms(*step, nk, like.device, like.dtype)
        return self._terms[key]


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

    def __init__(self, kind: str, inner: Any = None, cpu_query_chunks: bool = True) -> None:
        """cpu_query_chunks: on the CPU, run the edited kernel over query chunks (memory); False runs the
        one-call path CUDA runs (benchmarks/dispatch.py counts its operations on the CPU)."""
        self.kind = kind
        self.inner = inner
        self.cpu_query_chunks = cpu_query_chunks

    def attend(self, options: dict):
        if self.inner is not None:
            return lambda q, k, v: self.inner(q, k, v, options)
        heads = options["n_heads"]
        precision = options.get("attn_precision")
        return lambda q, k, v: optimized_attention(
            q, k, v, heads, attn_precision=precision, transformer_options=options
        )

    @torch.compiler.disable
    def prepare(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: dict) -> tuple | None:
        """The host side of one call, run eagerly even inside a torch.compile graph (the step lookup reads
        a sigma, observers keep running sums, terms are cached per step): None where this call attends as
        unedited, else (layout, the step's CrossTerms or None, the CrossCall or BatchRows for the kernel).
        Compiled code then only sees tensors and flags that change at window edges, not at every step."""
        state: EditState | None = options.get(STATE_KEY)
        if state is None:
            return None
        starts = cond_chunk_starts(options, q.shape[0], state.prompts.rows)
        if starts is None:
            return None
        step = state.step(options)
        if self.kind == "attn2":
            for observer in state.observers:
                observer.observe_cross(q, k, options, step, starts)
        if not starts or not state.plan.targets:
            return None
        layout = row_layout(tuple(starts), state.prompts.rows - 1)
        if self.kind == "attn2":
            terms = state.cross_terms(step, k.shape[1], v)
            if terms is None:
                return None
            return layout, terms, prepare_cross(layout, terms, q.shape[0], q.device)
        shape = options.get("original_shape") or options.get("activations_shape")
        factor = math.sqrt(shape[-1] * shape[-2] / q.shape[1]) if shape else 1.0
        if not state.plan.self_active(*step, factor):
            return None
        return layout, None, layout.rows(q.shape[0], q.device)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: dict) -> torch.Tensor:
        attend = self.attend(options)
        edit = self.prepare(q, k, v, options)
        if edit is None:
            return attend(q, k, v)
        layout, terms, prepared = edit
        heads = options["n_heads"]
        reference = options[STATE_KEY].reference
        # On the CPU, memory is the cost: query chunks written into the spent queries. Only around
        # the host's kernel, since another pack's patch may expect every query (a spatial mask).
        chunks = self.cpu_query_chunks and self.inner is None and q.device.type == "cpu"
        chunk = query_chunk(q) if chunks else None
        if self.kind == "attn2":
            if reference:
                return reference_cross_attention(q, k, v, heads, layout, terms).to(q.dtype)
            return cross_call(q, k, v, attend, prepared, chunk)
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


def _shared_noise_sampler(function: Any, noise: torch.Tensor, sigmas: torch.Tensor, seed: int | None):
    """A noise sampler that draws one row and gives it to every branch (ancestral and SDE samplers)."""
    first = noise[:1]
    rows = noise.shape[0]
    if "sde" in function.__name__ and function.__name__ != "sample_er_sde":
        positive = sigmas[sigmas > 0]
        one_row = k_sampling.BrownianTreeNoiseSampler(first, positive.min(), sigmas.max(), seed=seed, cpu=True)
    else:
        one_row = k_sampling.default_noise_sampler(first, seed=seed)
    return lambda sigma, sigma_next: one_row(sigma, sigma_next).expand(rows, *first.shape[1:]).contiguous()


def _check_conditioning(guider: Any, rows: int) -> None:
    for cond in guider.conds.get("positive", []):
        tokens = cond.get("cross_attn")
        if tokens is not None and tokens.shape[0] != rows:
            raise UserError(
                f"Prompt-to-Prompt: the positive conditioning holds {tokens.shape[0]} prompt(s) but the "
                f"edit needs {rows} (source + {rows - 1} target): connect PromptPair's CONDITIONING to the "
                "sampler's positive input"
            )


TORCH_COMPILE_KWARGS = "torch_compile_kwargs"
"""Where `comfy_api.torch_helpers.set_torch_compile_wrapper` (TorchCompileModel and the compile nodes of
other packs) keeps its torch.compile arguments in model_options."""


def _check_compile(model_options: dict) -> None:
    """torch.compile works around the edit's host-side part (AttentionPatch.prepare runs eagerly, a graph
    break); fullgraph=True forbids graph breaks, so it would fail deep inside dynamo: say so first."""
    if (model_options.get(TORCH_COMPILE_KWARGS) or {}).get("fullgraph"):
        raise UserError(
            "Prompt-to-Prompt: this model is compiled with torch.compile(fullgraph=True), which cannot run the "
            "edit (its per-step host work, the step lookup and attention observers, runs outside the graph): "
            "compile without fullgraph (ComfyUI's TorchCompileModel does)"
        )


def outer_sample_wrapper(
    executor,
    noise,
    latent_image,
    sampler,
    sigmas,
    denoise_mask=None,
    callback=None,
    disable_pbar=False,
    seed=None,
    latent_shapes=None,
):
    """Give every branch the source's latent and noise, and ancestral/SDE samplers one shared noise."""
    guider = executor.class_obj
    _check_compile(guider.model_options)
    state: EditState = guider.model_options["transformer_options"][STATE_KEY]
    rows = state.prompts.rows
    batch = latent_image.shape[0]
    if batch not in (1, rows):
        raise UserError(
            f"Prompt-to-Prompt: the latent holds {batch} images but PromptPair has {rows} prompts "
            f"(source + {rows - 1} target): use a latent of batch 1 (every branch starts from the same "
            f"noise) or of batch {rows}"
        )
    _check_conditioning(guider, rows)
    repeat = (rows,) + (1,) * (latent_image.ndim - 1)
    if batch == 1:
        latent_image = latent_image.repeat(repeat)
        if denoise_mask is not None and denoise_mask.shape[0] == 1:
            denoise_mask = denoise_mask.repeat((rows,) + (1,) * (denoise_mask.ndim - 1))
    noise = noise[:1].repeat(repeat)
    latent_shapes = [latent_image.shape]
    function = getattr(sampler, "sampler_function", None)
    options = getattr(sampler, "extra_options", None)
    shares = (
        function is not None
        and options is not None
        and "noise_sampler" in inspect.signature(function).parameters
        and options.get("noise_sampler") is None
    )
    if not shares:
        return executor(
            noise,
            latent_image,
            sampler,
            sigmas,
            denoise_mask,
            callback,
            disable_pbar,
            seed,
            latent_shapes=latent_shapes,
        )
    # The sampler object may be a cached node output: set and restore, never mutate its dict.
    sampler.extra_options = {**options, "noise_sampler": _shared_noise_sampler(function, noise, sigmas, seed)}
    try:
        return executor(
            noise,
            latent_image,
            sampler,
            sigmas,
            denoise_mask,
            callback,
            disable_pbar,
            seed,
            latent_shapes=latent_shapes,
        )
    finally:
        sampler.extra_options = options


def sampler_sample_wrapper(executor, guider, sigmas: torch.Tensor, *args, **kwargs):
    """The schedule's length is dynamic to torch.compile: AttentionPatch.prepare receives
    transformer_options, which hold it (`sample_sigmas`), and a run of another step count would
    otherwise recompile every graph of the model once."""
    torch._dynamo.maybe_mark_dynamic(sigmas, 0)
    return executor(guider, sigmas, *args, **kwargs)


def apply_edit(model, prompts: PromptSet, plan: EditPlan):
    """A clone of `model` that samples `prompts` with `plan`; composes with existing patches."""
    keys = transformer_blocks(model)
    if not keys:
        raise UserError(
            "Prompt-to-Prompt: this model has no cross-attention transformer blocks (supported: "
            "SD1.x, SD2.x and SDXL UNets)"
        )
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    previous = options.get(STATE_KEY)
    if previous is None:
        options[STATE_KEY] = EditState(prompts, plan)
    else:
        options[STATE_KEY] = replace(previous, prompts=prompts, plan=plan, _sigmas=None, _terms={})
    replaces = options.get("patches_replace", {})
    for kind in ("attn1", "attn2"):
        for key in keys:
            existing = replaces.get(kind, {}).get(key)
            inner = existing.inner if isinstance(existing, AttentionPatch) else existing
            patched.set_model_patch_replace(AttentionPatch(kind, inner), kind, *key)
    wrappers = comfy.patcher_extension.WrappersMP
    for kind, wrapper in (
        (wrappers.OUTER_SAMPLE, outer_sample_wrapper),
        (wrappers.SAMPLER_SAMPLE, sampler_sample_wrapper),
    ):
        patched.remove_wrappers_with_key(kind, WRAPPER_KEY)
        patched.add_wrapper_with_key(kind, WRAPPER_KEY, wrapper)
    return patched


def edit_state(model) -> EditState | None:
    """The edit a P2P node put on `model`, if any."""
    return model.model_options.get("transformer_options", {}).get(STATE_KEY)


def with_reference_attention(model):
    """A clone that computes edited attention by explicit softmax (the tests' reference path)."""
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    options[STATE_KEY] = replace(options[STATE_KEY], reference=True)
    return patched


def add_observer(model, prompts: PromptSet, observer):
    """A clone of `model` whose cross-attention layers report to `observer` (see EditState.observers).

    On a model without a P2P edit, the patches go on with an empty plan: nothing is edited, the
    maps are still observed (a plain generation's heat maps)."""
    state = edit_state(model)
    if state is None:
        model = apply_edit(model, prompts, EditPlan((), Window(0.0, 0.0)))
        state = edit_state(model)
    elif state.prompts != prompts:
        raise UserError(
            "the prompts differ from those of the P2P edit already on the model: connect the same PromptPair"
        )
    else:
        model = model.clone()
    model.model_options["transformer_options"][STATE_KEY] = state.with_observer(observer)
    return model
