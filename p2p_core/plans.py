"""From node inputs to an EditPlan: alignment, schedules and weights put together."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .alignment import refinement_mapper, replacement_mapper
from .edits import EditPlan
from .schedules import Window, parse_number, parse_word_values
from .tokens import PromptSet, PromptTokens, find_word

Mapper = Callable[[PromptTokens, PromptTokens], tuple[torch.Tensor, torch.Tensor]]

SELF_LAYERS = {"coarse": 4, "medium": 2, "all": 1}
"""Self-attention injection: layer choice id (stored in workflows) -> the least downsampling factor against the
latent."""
SELF_LAYER_LABELS = {
    "coarse": "coarse (paper: 16x16 at 512 px)",
    "medium": "medium (up to 32x32 at 512 px)",
    "all": "all layers",
}
"""Each choice's description (what workflows saved before the ids hold; they still load)."""
DEFAULT_SELF_LAYERS = "coarse"

WEIGHT_RANGE = (-10.0, 10.0)


def word_windows(prompts: PromptSet, word_schedule: str) -> list[dict[tuple[int, ...], Window]]:
    """`word_schedule` ("lemon=0.2, cake=0.1-0.6") as per-target {positions: window}."""
    windows: list[dict[tuple[int, ...], Window]] = [{} for _ in prompts.targets]
    for word, value in parse_word_values(word_schedule, "word_schedule"):
        window = Window.parse(value, f"word_schedule {word!r}")
        for per_target, positions in zip(windows, find_word(prompts.targets, word, "word_schedule"), strict=True):
            if positions is not None:
                per_target[tuple(positions)] = window
    return windows


def edit_plan(
    prompts: PromptSet,
    mapper: Mapper,
    cross_replace: float | str,
    self_replace: float | str,
    word_schedule: str = "",
    self_layers: str = DEFAULT_SELF_LAYERS,
) -> EditPlan:
    """A replace or refine plan: `mapper` is replacement_mapper or refinement_mapper."""
    if not prompts.targets:
        raise ValueError("the edit needs at least one target prompt")
    cross = Window.parse(cross_replace, "cross_replace")
    self_window = Window.parse(self_replace, "self_replace")
    if self_layers not in SELF_LAYERS:
        raise ValueError(f"self_layers: {self_layers!r} is not one of {', '.join(SELF_LAYERS)}")
    targets = []
    for target, windows in zip(prompts.targets, word_windows(prompts, word_schedule), strict=True):
        mapping, injected = mapper(prompts.source, target)
        targets.append(EditPlan.for_target(mapping, injected, cross, windows))
    return EditPlan(tuple(targets), self_window, SELF_LAYERS[self_layers])


def replace_plan(prompts: PromptSet, *args, **kwargs) -> EditPlan:
    """Word swap (paper 3.2, "word swap")."""
    return edit_plan(prompts, replacement_mapper, *args, **kwargs)


def refine_plan(prompts: PromptSet, *args, **kwargs) -> EditPlan:
    """Added phrases (paper 3.2, "adding a new phrase")."""
    return edit_plan(prompts, refinement_mapper, *args, **kwargs)


def reweighted_plan(plan: EditPlan, prompts: PromptSet, weights: str) -> EditPlan:
    """`weights` ("fluffy=2, red=-1", or a fader "fluffy=-2|0|2|4" with one value per target)
    multiplied onto `plan` (composes with an earlier re-weight)."""
    per_target: list[dict[tuple[int, ...], float]] = [{} for _ in prompts.targets]
    pairs = parse_word_values(weights, "weights")
    if not pairs:
        raise ValueError("weights: no word=value given (e.g. fluffy=2.0, red=-1)")
    for word, value in pairs:
        values = [parse_number(v, f"weights {word!r}", *WEIGHT_RANGE) for v in value.split("|")]
        if len(values) == 1:
            values = values * len(prompts.targets)
        if len(values) != len(prompts.targets):
            raise ValueError(
                f"weights {word!r}: {len(values)} values for {len(prompts.targets)} target prompts; give one "
                "value, or one per target (a fader sweep repeats the target on several lines)"
            )
        found = find_word(prompts.targets, word, "weights")
        for factors, positions, factor in zip(per_target, found, values, strict=True):
            if positions is not None:
                key = tuple(positions)
                factors[key] = factors.get(key, 1.0) * factor
    return plan.reweighted(per_target)
