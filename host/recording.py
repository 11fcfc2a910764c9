"""Attention-map recorders on a model: LocalBlend's blender and AttentionMapRecorder's recorder.

A recorder (p2p_core/maps.py) is an observer of the model's cross-attention layers, or of the chosen blocks
of a joint-attention model (Flux, SD3, Qwen-Image, Z-Image, Chroma; edit.py `add_observer`; host/joint.py).
One outer-sample wrapper (MAPS_KEY) starts every recorder before a run, blends the output of every local blend
with its final mask, and files each recorder's averaged maps with the output latent; one post-CFG function
blends the denoised prediction of the target rows during sampling. Both read the observers from the
edit state, so their order against the edit's own wrapper and the order of the nodes do not matter.
"""

from __future__ import annotations

import logging

import comfy.patcher_extension
import torch

from ..p2p_core.blending import LocalBlender, split_words
from ..p2p_core.maps import MapRecorder
from ..p2p_core.schedules import schedule_step
from ..p2p_core.tokens import PromptSet
from .edit import add_observer
from .errors import UserError, check_same_prompts
from .sampling import SampleCall, check_reached, outer_sample_wrapper
from .state import RUN_KEY, STATE_KEY, edit_state

MAPS_KEY = "prompt_to_prompt_maps"
OUTER_SAMPLE = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE


def _recorders(options: dict) -> list[MapRecorder]:
    state = options.get("transformer_options", {}).get(STATE_KEY)
    if state is None:
        return []
    return [o for o in state.observers if isinstance(o, MapRecorder)]


@outer_sample_wrapper
def maps_outer_sample(call: SampleCall) -> torch.Tensor:
    """Start the recorders, sample, blend the final output of each local blend, file the maps."""
    options = call.guider.model_options
    recorders = _recorders(options)
    for recorder in recorders:
        try:
            check_same_prompts(options["transformer_options"][STATE_KEY].prompts, recorder.prompts)
        except UserError as error:
            raise UserError(f"Prompt-to-Prompt attention maps: {error}") from None
        recorder.begin()
    output = call.run()
    run = options["transformer_options"].get(RUN_KEY)
    if run is not None:  # inside the edit's wrapper: a recorder that saw nothing may not have been reached
        check_reached(run)
    for recorder in recorders:
        if isinstance(recorder, LocalBlender):
            output = recorder.blend(output, _mask(recorder, output.shape[-2:]))
            _warn_if_trivial(recorder.last_mask)
    for recorder in recorders:
        try:
            recorder.finish(output)
        except ValueError as error:
            raise UserError(f"Prompt-to-Prompt attention maps: {error}") from None
    return output


def _mask(blender: LocalBlender, size) -> torch.Tensor:
    try:
        return blender.mask(tuple(size))
    except ValueError as error:
        raise UserError(f"LocalBlend: {error}") from None


def _warn_if_trivial(mask: torch.Tensor) -> None:
    for row, target in enumerate(mask, start=1):
        if not target.any():
            logging.warning("LocalBlend: the mask of target %d is empty: the target came out equal to the source", row)
        elif target.all():
            logging.warning("LocalBlend: the mask of target %d covers the whole image: nothing was kept", row)


def blend_post_cfg(args: dict) -> torch.Tensor:
    """Post-CFG: blend the target rows' denoised prediction toward the source's inside the blend window."""
    denoised = args["denoised"]
    options = args["model_options"]
    state = options.get("transformer_options", {}).get(STATE_KEY)
    blenders = [r for r in _recorders(options) if isinstance(r, LocalBlender)]
    if not blenders or denoised.shape[0] != state.prompts.rows:
        return denoised
    sample_sigmas = options["transformer_options"].get("sample_sigmas")
    step, steps = (0, 1) if sample_sigmas is None else schedule_step(float(args["sigma"].max()), sample_sigmas)
    for blender in blenders:
        if blender.active(step, steps):
            denoised = blender.blend(denoised, _mask(blender, denoised.shape[-2:]))
    return denoised


def attach_recorder(model, prompts: PromptSet, recorder: MapRecorder):
    """A clone of `model` that feeds `recorder` (and blends, for a LocalBlender) while sampling."""
    patched = add_observer(model, prompts, recorder)
    patched.remove_wrappers_with_key(OUTER_SAMPLE, MAPS_KEY)
    patched.add_wrapper_with_key(OUTER_SAMPLE, MAPS_KEY, maps_outer_sample)
    if blend_post_cfg not in patched.model_options.get("sampler_post_cfg_function", []):
        patched.set_model_sampler_post_cfg_function(blend_post_cfg)
    return patched


def local_blend(
    model,
    prompts: PromptSet,
    source_words: str,
    target_words: str,
    threshold: float = 0.3,
    blend_start: float = 0.2,
    factor: int = 4,
    own_mask: torch.Tensor | None = None,
    own_mask_mode: str = "replace",
):
    """(patched model, its LocalBlender): the function behind the LocalBlend node (benchmarks call it).
    ValueError for a bad input (a word in none of the prompts it must be in, a threshold out of range).
    `own_mask`: a ComfyUI MASK [M, H, W] at any size, met with the words' mask as `own_mask_mode` says."""
    words = split_words(source_words), split_words(target_words)
    blender = LocalBlender(prompts, factor, *words, threshold, blend_start, own_mask, own_mask_mode)
    return attach_recorder(model, prompts, blender), blender


def find_record(model, samples: torch.Tensor, prompts: PromptSet):
    """The maps a recorder on `model` filed with the sampler output `samples`."""
    state = edit_state(model)
    recorders = [] if state is None else [o for o in state.observers if isinstance(o, MapRecorder)]
    if not recorders:
        raise UserError(
            "this model records no attention maps: put an Attention Map Recorder (or Local "
            "Blend) node before the sampler and connect the model it outputs here"
        )
    check_same_prompts(state.prompts, prompts)
    for recorder in reversed(recorders):
        record = recorder.record_for(samples)
        if record is not None:
            return record
    raise UserError(
        "this model never sampled these samples (or they were changed after sampling): "
        "connect the LATENT that the sampler using this model put out, and run that sampler"
    )
