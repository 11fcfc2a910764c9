"""The edit state a model carries in `transformer_options[STATE_KEY]`, and the state of one sampling run of it
(`EditRun`, in `transformer_options[RUN_KEY]` during the run): what the attention patches read."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from ..p2p_core.edits import CrossTerms, EditPlan
from ..p2p_core.schedules import schedule_step
from ..p2p_core.tokens import PromptSet

STATE_KEY = "p2p_edit"
RUN_KEY = "p2p_edit_run"


@dataclass(frozen=True)
class EditState:
    """The edit a model carries in `transformer_options[STATE_KEY]`: immutable, shared by every clone."""

    prompts: PromptSet
    plan: EditPlan
    family: Any = None
    """The AttentionFamily (host/edit.py) of the model's attention sites: it installs the patches for a run."""
    sites: tuple = ()
    """The model's attention sites of that family, found when the edit went on the model."""
    reference: bool = False
    observers: tuple = ()
    """Objects with `observe_cross(call)` (p2p_core.maps.MapRecorder; `call` a p2p_core.maps.CrossObservation),
    called before the edit by every UNet cross-attention layer and by the family's chosen joint-attention
    blocks of a diffusion transformer (local blend and mask recorders). Shared, not copied, when the model is
    cloned."""

    def __deepcopy__(self, memo: dict) -> EditState:
        return self  # immutable; ComfyUI deep-copies model_options on every clone, the observers must stay shared

    def with_observer(self, observer) -> EditState:
        return replace(self, observers=(*self.observers, observer))


class EditRun:
    """One sampling run of an edit, in `transformer_options[RUN_KEY]` while it lasts: the edit's outer-sample
    wrapper creates it, the attention patches read it. Holds what every layer of one model call shares."""

    def __init__(self, state: EditState) -> None:
        self.state = state
        self._sigmas: torch.Tensor | None = None
        self._step: tuple[int, int] = (0, 1)
        self._terms: dict[tuple, CrossTerms | None] = {}
        self.reached: set[str] = set()
        """The kinds of attention (the family's `kinds`) whose patch saw a conditional chunk of the prompts."""
        self.foreign_batches: set[int] = set()
        """Batch sizes of the patched calls whose rows were not chunks of the prompts (a node changed the batch)."""

    def count(self, kind: str, chunk_starts: list[int] | None, batch: int) -> None:
        """Account one call of a `kind` patch: its conditional chunks' first rows (None: not chunks of the
        prompts), its batch size."""
        if chunk_starts is None:
            self.foreign_batches.add(batch)
        elif chunk_starts:
            self.reached.add(kind)

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
        """The plan's cross-attention terms at `step` for `nk` keys, on `like`'s device and dtype, made once."""
        key = (step, nk, like.device, like.dtype)
        if key not in self._terms:
            self._terms[key] = self.state.plan.cross_terms(*step, nk, like.device, like.dtype)
        return self._terms[key]


def edit_state(model) -> EditState | None:
    """The edit a P2P node put on `model`, if any."""
    return model.model_options.get("transformer_options", {}).get(STATE_KEY)
