"""The edit state a model carries in `transformer_options[STATE_KEY]`: what the attention patches read."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from ..p2p_core.edits import CrossTerms, EditPlan
from ..p2p_core.schedules import schedule_step
from ..p2p_core.tokens import PromptSet

STATE_KEY = "p2p_edit"


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


def edit_state(model) -> EditState | None:
    """The edit a P2P node put on `model`, if any."""
    return model.model_options.get("transformer_options", {}).get(STATE_KEY)
