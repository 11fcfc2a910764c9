"""Inputs that several nodes share: the edit windows, the map resolution, the inversion; and the stable ids of
the choice inputs (an id is what a workflow stores; the label it had before the ids still loads)."""

from __future__ import annotations

from comfy_api.latest import io

from ..host.errors import UserError
from ..p2p_core.maps import DEFAULT_RESOLUTION, RESOLUTION_LABELS, RESOLUTIONS
from ..p2p_core.plans import DEFAULT_SELF_LAYERS, SELF_LAYER_LABELS, SELF_LAYERS
from .types import P2PInversion


def choice_id(value: str | None, labels: dict[str, str], default: str, what: str) -> str:
    """The id of a choice input's `value`: an id of `labels`, or its label (workflows saved before the ids);
    `default` when the input is absent. A UserError naming `what` and the ids otherwise."""
    if value is None:
        return default
    if value in labels:
        return value
    for choice, label in labels.items():
        if value == label:
            return choice
    raise UserError(f"{what}: {value!r} is not one of {', '.join(labels)}")


def self_layers_id(value: str | None) -> str:
    """The `self_layers` input's id (see choice_id)."""
    return choice_id(value, SELF_LAYER_LABELS, DEFAULT_SELF_LAYERS, "self_layers")


def resolution_factor(value: str | None) -> int:
    """The downsampling factor of the `resolution` input's choice (see choice_id)."""
    return RESOLUTIONS[choice_id(value, RESOLUTION_LABELS, DEFAULT_RESOLUTION, "resolution")]


def validate_choice(value: str | None, labels: dict[str, str], what: str) -> bool | str:
    """A node's `validate_inputs` answer for a choice input: True, or the reason it is refused. Naming the input
    there replaces ComfyUI's own check that the value is an option, so that former labels load."""
    try:
        choice_id(value, labels, "", what)
    except UserError as error:
        return str(error)
    return True


class ResolutionChoice:
    """Mixin of the nodes with a `resolution` input (before io.ComfyNode): its ids and former labels load."""

    @classmethod
    def validate_inputs(cls, resolution: str | None = None) -> bool | str:
        return validate_choice(resolution, RESOLUTION_LABELS, "resolution")


class SelfLayersChoice:
    """Mixin of the nodes with a `self_layers` input (before io.ComfyNode): its ids and former labels load."""

    @classmethod
    def validate_inputs(cls, self_layers: str | None = None) -> bool | str:
        return validate_choice(self_layers, SELF_LAYER_LABELS, "self_layers")


def _described(labels: dict[str, str]) -> str:
    return "; ".join(f"{choice}: {label}" for choice, label in labels.items())


def window_inputs(cross: float, self_: float) -> list[io.Input]:
    """The edit nodes' injection windows, with the defaults `cross` and `self_` of their ends."""
    return [
        io.Float.Input(
            "cross_replace",
            default=cross,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip=(
                "Fraction of the steps (from the start) during which the target takes the source's "
                "cross-attention maps. Higher keeps more of the source's layout; lower lets bigger shape "
                "changes through (paper: 0.8 for a swap). On the joint-attention models (Flux, SD3, Qwen-Image, "
                "Z-Image, Chroma): the fraction of the steps during which the target's image tokens take the "
                "source's queries and keys (and a re-weight acts): about 0.8 for a colour or texture change, "
                "lower for a shape change (0.3 on the demo DiT)."
            ),
        ),
        io.Float.Input(
            "self_replace",
            default=self_,
            min=0.0,
            max=1.0,
            step=0.01,
            tooltip=(
                "Fraction of the steps during which the target takes the source's self-attention maps: "
                "keeps the geometry. 0.2-0.4 is typical; higher for colour/texture edits, lower for shape edits. "
                "UNet models only: on the joint-attention models (Flux, SD3, Qwen-Image, Z-Image, Chroma) the image "
                "tokens' q/k injection (cross_replace) keeps the geometry."
            ),
        ),
        io.String.Input(
            "word_schedule",
            default="",
            optional=True,
            tooltip=(
                "Per-word cross_replace overrides, e.g. 'lemon=0.2, cake=0.1-0.6' (a fraction, or a "
                "start-end range). Words are those of the target prompt. UNet models only: the joint-attention "
                "models (Flux, SD3, Qwen-Image, Z-Image, Chroma) edit the image tokens, not words; leave it empty "
                "there."
            ),
        ),
        io.Float.Input(
            "cross_start",
            default=0.0,
            min=0.0,
            max=1.0,
            step=0.01,
            optional=True,
            tooltip=(
                "Start of the cross-attention injection (fraction of the steps); the end is cross_replace. On the "
                "joint-attention models (Flux, SD3, Qwen-Image, Z-Image, Chroma): the start of the q/k injection."
            ),
        ),
        io.Float.Input(
            "self_start",
            default=0.0,
            min=0.0,
            max=1.0,
            step=0.01,
            optional=True,
            tooltip="Start of the self-attention injection (fraction of the steps); the end is self_replace.",
        ),
        io.Combo.Input(
            "self_layers",
            options=list(SELF_LAYERS),
            default=DEFAULT_SELF_LAYERS,
            optional=True,
            tooltip=(
                "Which self-attention layers take the source's maps: the coarse ones (as the paper) keep "
                "the layout and let details change; more layers keep more detail "
                f"({_described(SELF_LAYER_LABELS)}). On Flux (Flux.1, Flux.2, Chroma): which blocks take the "
                "source's image queries and keys: coarse the double (two-stream) blocks, medium those and the "
                "first half of the single blocks, all every block. On SD3/SD3.5, Qwen-Image and Z-Image / Lumina "
                "2: the early joint blocks, where Shin et al. 2025 find the layout is set: coarse the first "
                "third, medium the first two thirds, all every block."
            ),
        ),
    ]


def resolution_input() -> io.Combo.Input:
    """The map nodes' `resolution` input: which cross-attention layers the maps come from."""
    return io.Combo.Input(
        "resolution",
        options=list(RESOLUTIONS),
        default=DEFAULT_RESOLUTION,
        optional=True,
        tooltip=(
            "Which cross-attention layers the maps come from, by their size against the image. The paper uses "
            "1/32 (16x16 at 512 px, 32x32 at 1024 px): coarse but reliable. Finer maps follow edges more closely "
            "and are noisier; a model without layers at that size says so when it samples "
            f"({_described(RESOLUTION_LABELS)}). The joint-attention models (Flux, SD3, Qwen-Image, Z-Image, "
            "Chroma) have one grid, their image tokens (1/16 of the image side), whatever this says: the maps "
            "there are the image->text part of the joint attention of five blocks around the middle of the "
            "model, averaged and smoothed (as Shin et al. 2025)."
        ),
    )


def inversion_input() -> io.Input:
    """The edit nodes' optional `inversion` input."""
    return P2PInversion.Input(
        "inversion",
        optional=True,
        tooltip=(
            "From DDIMInvert: the source branch (row 0) follows the photo's inversion and reconstructs it at "
            "any cfg, while the targets are edited. Sample DDIMInvert's LATENT with euler or ddim, add_noise "
            "disabled, and DDIMInvert's steps and scheduler."
        ),
    )
