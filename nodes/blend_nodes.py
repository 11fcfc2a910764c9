"""LocalBlend, AttentionMapRecorder and AttentionMaskExtract: the maps of chosen words while sampling.

A recorder (p2p_core/maps.py) is an observer of the model's cross-attention layers (patching.py
`add_observer`). One outer-sample wrapper (MAPS_KEY) starts every recorder before a run, blends
the output of every local blend with its final mask, and files each recorder's averaged maps with
the output latent; one post-CFG function blends the denoised prediction of the target rows during
sampling. Both read the observers from the edit state, so their order against the edit's own
wrapper and the order of the nodes do not matter.
"""

from __future__ import annotations

import logging

import comfy.patcher_extension
import torch
from comfy_api.latest import io, ui
from PIL import Image, ImageDraw, ImageFont

from ..p2p_core.blending import LocalBlender, split_words, word_masks
from ..p2p_core.maps import RESOLUTIONS, MapRecorder, heat_panels, phrase_map
from ..p2p_core.schedules import schedule_step
from ..p2p_core.tokens import PromptSet
from .inversion import inversion_input, pin_source
from .patching import STATE_KEY, UserError, add_observer, edit_state
from .types import CATEGORY, P2PPrompts

MAPS_KEY = "prompt_to_prompt_maps"
OUTER_SAMPLE = comfy.patcher_extension.WrappersMP.OUTER_SAMPLE


def _recorders(options: dict) -> list[MapRecorder]:
    state = options.get("transformer_options", {}).get(STATE_KEY)
    if state is None:
        return []
    return [o for o in state.observers if isinstance(o, MapRecorder)]


def maps_outer_sample(executor, *args, **kwargs) -> torch.Tensor:
    """Start the recorders, sample, blend the final output of each local blend, file the maps."""
    options = executor.class_obj.model_options
    recorders = _recorders(options)
    prompts = options["transformer_options"][STATE_KEY].prompts if recorders else None
    for recorder in recorders:
        if recorder.prompts != prompts:
            raise UserError(
                "Prompt-to-Prompt: LocalBlend / AttentionMapRecorder were given other prompts than the edit "
                "on the model: connect the same PromptPair to every P2P node"
            )
        recorder.begin()
    output = executor(*args, **kwargs)
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
):
    """(patched model, its LocalBlender): the function behind the LocalBlend node (benchmarks call it)."""
    try:
        blender = LocalBlender(
            prompts, factor, split_words(source_words), split_words(target_words), threshold, blend_start
        )
    except ValueError as error:
        raise UserError(f"LocalBlend: {error}") from None
    return attach_recorder(model, prompts, blender), blender


def _resolution_input() -> io.Combo.Input:
    return io.Combo.Input(
        "resolution",
        options=list(RESOLUTIONS),
        default=next(iter(RESOLUTIONS)),
        optional=True,
        tooltip=(
            "Which cross-attention layers the maps come from, by their size against the image. The paper uses "
            "1/32 (16x16 at 512 px, 32x32 at 1024 px): coarse but reliable. Finer maps follow edges more closely "
            "and are noisier; a model without layers at that size says so when it samples."
        ),
    )


class LocalBlend(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LocalBlend",
            display_name="P2P Local Blend",
            category=CATEGORY,
            description=(
                "Keeps everything outside the edited words identical to the source: a mask from the cross-attention "
                "maps of the chosen words (source and target united) blends each target toward the source while "
                "sampling, and the final target equals the source exactly outside the final mask. Chains before "
                "or after Attention Replace / Refine / Reweight."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model, plain or patched by a P2P edit node; it is cloned."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the same prompts as the edit."),
                io.String.Input(
                    "source_words",
                    default="bicycle",
                    tooltip="Words of the source prompt whose region may change, comma separated ('cat, red hat').",
                ),
                io.String.Input(
                    "target_words",
                    default="car",
                    tooltip="Words of the target prompt(s) whose region may change, comma separated.",
                ),
                io.Float.Input(
                    "threshold",
                    default=0.3,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip=(
                        "A position belongs to the mask where a word's map exceeds this fraction of its maximum. "
                        "Lower grows the edited region; higher keeps more of the source (paper: 0.3)."
                    ),
                ),
                io.Float.Input(
                    "blend_start",
                    default=0.2,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    optional=True,
                    tooltip=(
                        "Fraction of the steps after which the blend acts (the early maps are noise; paper: 0.2). "
                        "The final image is always blended with the final mask."
                    ),
                ),
                _resolution_input(),
                inversion_input(),
            ],
            outputs=[
                io.Model.Output(tooltip="The patched model: connect it to a sampler with PromptPair's conditioning.")
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        prompts: PromptSet,
        source_words: str,
        target_words: str,
        threshold: float,
        blend_start: float = 0.2,
        resolution: str | None = None,
        inversion=None,
    ) -> io.NodeOutput:
        factor = RESOLUTIONS[resolution or next(iter(RESOLUTIONS))]
        patched, _ = local_blend(model, prompts, source_words, target_words, threshold, blend_start, factor)
        return io.NodeOutput(pin_source(patched, inversion))


class AttentionMapRecorder(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AttentionMapRecorder",
            display_name="P2P Attention Map Recorder",
            category=CATEGORY,
            description=(
                "Records where every word of the prompts lands while the model samples (averaged cross-attention "
                "maps at one resolution), for Attention Mask Extract. Works on a plain model too (no edit). Not "
                "needed after Local Blend, which records the same maps."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model, plain or patched by P2P nodes; it is cloned."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the prompts the sampler gets."),
                _resolution_input(),
            ],
            outputs=[
                io.Model.Output(
                    tooltip="Sample with this model, then connect it and its samples to Attention Mask Extract."
                )
            ],
        )

    @classmethod
    def execute(cls, model, prompts: PromptSet, resolution: str | None = None) -> io.NodeOutput:
        factor = RESOLUTIONS[resolution or next(iter(RESOLUTIONS))]
        return io.NodeOutput(attach_recorder(model, prompts, MapRecorder(prompts, factor)))


def _find_record(model, samples: torch.Tensor, prompts: PromptSet):
    state = edit_state(model)
    recorders = [] if state is None else [o for o in state.observers if isinstance(o, MapRecorder)]
    if not recorders:
        raise UserError(
            "AttentionMaskExtract: this model records no attention maps: put an Attention Map Recorder (or Local "
            "Blend) node before the sampler and connect the model it outputs here"
        )
    if state.prompts != prompts:
        raise UserError(
            "AttentionMaskExtract: the prompts differ from those the model sampled: connect the same PromptPair"
        )
    for recorder in reversed(recorders):
        record = recorder.record_for(samples)
        if record is not None:
            return record
    raise UserError(
        "AttentionMaskExtract: this model never sampled these samples (or they were changed after sampling): "
        "connect the LATENT that the sampler using this model put out, and run that sampler"
    )


def _word_positions(prompts: PromptSet, words: list[str]) -> list[list[list[int] | None]]:
    """[word][row] positions of each word in each prompt (None where absent); an error for a word in none."""
    found = []
    for word in words:
        per_row = []
        for prompt in prompts.all:
            try:
                per_row.append(prompt.find_phrase(word))
            except ValueError:
                per_row.append(None)
        if all(p is None for p in per_row):
            listing = "; ".join(
                f"{'source' if row == 0 else f'target {row}'}: {' '.join(p.words)}" for row, p in enumerate(prompts.all)
            )
            raise UserError(f"AttentionMaskExtract: the word {word!r} is in none of the prompts ({listing})")
        found.append(per_row)
    return found


def _labels(words: list[str], present: list[bool], panel_width: int) -> torch.Tensor:
    """[label_h, len(words) * panel_width, 3]: each word written under its panel."""
    height = max(14, panel_width // 10)
    try:
        font = ImageFont.load_default(size=max(10, height * 3 // 4))
    except TypeError:  # Pillow before 10.1: one bitmap size
        font = ImageFont.load_default()
    strip = Image.new("RGB", (panel_width * len(words), height), "white")
    draw = ImageDraw.Draw(strip)
    for i, (word, there) in enumerate(zip(words, present, strict=True)):
        text = word if there else f"{word} (not in prompt)"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        origin = (i * panel_width + (panel_width - right + left) // 2 - left, (height - bottom + top) // 2 - top)
        draw.text(origin, text, fill="black", font=font)
    return torch.frombuffer(bytearray(strip.tobytes()), dtype=torch.uint8).reshape(height, -1, 3).float() / 255


def _describe(row: int, prompts: PromptSet, mask: torch.Tensor, words: list[str]) -> str:
    name = "source" if row == 0 else f"target {row}"
    if not words:
        return f"{name}: EMPTY mask (none of the words is in {prompts.all[row].text!r})"
    share = float(mask.float().mean())
    if share == 0.0:
        return f"{name}: EMPTY mask for {', '.join(words)} (lower the threshold)"
    if share == 1.0:
        return f"{name}: FULL mask for {', '.join(words)} (raise the threshold)"
    return f"{name}: mask covers {share:.0%} of the image ({', '.join(words)})"


class AttentionMaskExtract(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AttentionMaskExtract",
            display_name="P2P Attention Mask Extract",
            category=CATEGORY,
            description=(
                "Masks and heat maps of chosen words from the cross-attention maps recorded while the samples were "
                "sampled (paper figure 4): one mask per image, for compositing or inpainting, and one labelled "
                "heat-map panel per word."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The model that sampled the samples: the output of Attention Map Recorder or Local Blend.",
                ),
                io.Latent.Input("samples", tooltip="The sampler's output, unchanged."),
                P2PPrompts.Input("prompts", tooltip="From PromptPair: the prompts the samples were sampled with."),
                io.String.Input(
                    "words",
                    default="cat",
                    tooltip=(
                        "Words of the source or of a target, comma separated; each row's mask unites those in its "
                        "prompt."
                    ),
                ),
                io.Float.Input(
                    "threshold",
                    default=0.3,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="The mask holds the positions where a word's map exceeds this fraction of its maximum.",
                ),
                io.Int.Input(
                    "upscale",
                    default=8,
                    min=1,
                    max=64,
                    optional=True,
                    tooltip="Image pixels per latent pixel (8 for the SD1.x, SD2.x and SDXL VAEs).",
                ),
                io.Image.Input(
                    "images", optional=True, tooltip="The decoded samples, to draw the heat maps over (optional)."
                ),
            ],
            outputs=[
                io.Mask.Output("mask", tooltip="One mask per image (source, then targets), at the image's size."),
                io.Image.Output("heatmaps", tooltip="Per image, one heat-map panel per word, labelled."),
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        samples: dict,
        prompts: PromptSet,
        words: str,
        threshold: float,
        upscale: int = 8,
        images: torch.Tensor | None = None,
    ) -> io.NodeOutput:
        chosen = split_words(words)
        if not chosen:
            raise UserError("AttentionMaskExtract: no word given (e.g. 'cat, hat')")
        positions = _word_positions(prompts, chosen)
        record = _find_record(model, samples["samples"], prompts)
        size = (record.output.shape[-2] * upscale, record.output.shape[-1] * upscale)
        rows, grid = prompts.rows, record.maps.shape[-2:]
        maps = torch.zeros((rows, len(chosen), *grid))
        for w, per_row in enumerate(positions):
            for row, found in enumerate(per_row):
                if found is not None:
                    maps[row, w] = phrase_map(record.maps[row], found)
        masks, lines, strips = [], [], []
        if images is not None:
            images = torch.nn.functional.interpolate(
                images.movedim(-1, 1).float(), size=size, mode="bilinear", align_corners=False
            ).movedim(1, -1)
            images = images.expand(rows, -1, -1, -1) if images.shape[0] == 1 else images
            if images.shape[0] != rows:
                raise UserError(f"AttentionMaskExtract: {images.shape[0]} images for {rows} samples")
        panels = heat_panels(maps, size, images)
        for row in range(rows):
            present = [w for w, per_row in enumerate(positions) if per_row[row] is not None]
            mask = torch.zeros(size, dtype=torch.bool)
            if present:
                mask = word_masks(maps[row, present], size, threshold).any(0)
            masks.append(mask.float())
            lines.append(_describe(row, prompts, mask, [chosen[w] for w in present]))
            labels = _labels(chosen, [per_row[row] is not None for per_row in positions], size[1])
            strips.append(torch.cat([panels[row], labels]))
        return io.NodeOutput(torch.stack(masks), torch.stack(strips), ui=ui.PreviewText("\n".join(lines)))
