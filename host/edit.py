"""Puts an edit plan on a ComfyUI model: the edit state (with the attention family and its sites) and one
outer-sample wrapper that lines the batch up and puts the family's patches on every site for the run.
Everything goes on a clone; nothing global.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

import comfy.patcher_extension

from ..p2p_core.edits import EditPlan
from ..p2p_core.schedules import Window
from ..p2p_core.tokens import PromptSet
from .errors import UserError, check_same_prompts
from .joint_models import (
    ChromaAttention,
    FluxAttention,
    NextDiTAttention,
    QwenImageAttention,
    SD3Attention,
)
from .sampling import WRAPPER_KEY, edit_outer_sample, edit_sampler_sample
from .state import STATE_KEY, EditState, edit_state
from .unet import UNetAttention


class AttentionFamily(Protocol):
    """Where a family of models keeps its attention, and how the pack's patch goes on it."""

    name: str
    kinds: dict[str, str]
    """The kinds of attention the family patches at every site (ComfyUI's name -> a reader's); a run whose
    patches of one kind never saw the prompts' conditional rows did not edit."""

    def sites(self, model: Any) -> list:
        """The model's attention sites of this family (empty when the model is not of it)."""

    def install(self, options: dict, sites: list) -> None:
        """Put the pack's attention processor on every site in one sampling run's transformer `options`: each
        key it changes gets a new value (a changed dict is a copy), which the run sets back when it ends. The
        processor counts its calls in the run's EditRun (`EditRun.count`, one of `kinds`)."""


FAMILIES: tuple[AttentionFamily, ...] = (
    UNetAttention(),
    FluxAttention(),
    SD3Attention(),
    QwenImageAttention(),
    NextDiTAttention(),
    ChromaAttention(),
)


def model_family(model) -> str:
    """The model's family as ComfyUI names it: its model class (SD15, Flux, WAN21, HunyuanDiT, ...) and
    diffusion model class."""
    return f"{type(model.model).__name__} ({type(model.model.diffusion_model).__name__})"


def apply_edit(model, prompts: PromptSet, plan: EditPlan):
    """A clone of `model` that samples `prompts` with `plan`; composes with existing patches."""
    for family in FAMILIES:
        sites = family.sites(model)
        if sites:
            break
    else:
        raise UserError(
            f"this {model_family(model)} model has no cross-attention transformer blocks nor joint attention the "
            "pack can edit (supported: " + ", ".join(family.name for family in FAMILIES) + ")"
        )
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    previous = options.get(STATE_KEY)
    if previous is None:
        options[STATE_KEY] = EditState(prompts, plan, family, tuple(sites))
    else:
        options[STATE_KEY] = replace(previous, prompts=prompts, plan=plan, family=family, sites=tuple(sites))
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, WRAPPER_KEY, edit_outer_sample)
    patched.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY)
    patched.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.SAMPLER_SAMPLE, WRAPPER_KEY, edit_sampler_sample)
    return patched


def with_reference_attention(model):
    """A clone that computes edited attention by explicit softmax (the tests' reference path)."""
    patched = model.clone()
    options = patched.model_options["transformer_options"]
    options[STATE_KEY] = replace(options[STATE_KEY], reference=True)
    return patched


def add_observer(model, prompts: PromptSet, observer):
    """A clone of `model` whose cross-attention layers report to `observer` (see EditState.observers).

    On a model without a P2P edit, the patches go on with an empty plan: nothing is edited, the
    maps are still observed (a plain generation's heat maps), on the UNet models and every joint-attention
    family (Flux, SD3, Qwen-Image, Z-Image, Chroma)."""
    state = edit_state(model)
    if state is None:
        model = apply_edit(model, prompts, EditPlan((), Window(0.0, 0.0)))
        state = edit_state(model)
    else:
        check_same_prompts(state.prompts, prompts)
        model = model.clone()
    model.model_options["transformer_options"][STATE_KEY] = state.with_observer(observer)
    return model
