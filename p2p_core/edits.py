"""An edit plan: what each target row takes from the source row, and when.

Per target t (own context positions, Ls source / Lt target):
  mapper   [Ls, Lt]  source positions feeding each target position (alignment.py);
  injected [Lt]      1 where the target position takes the source's attention, 0 for new tokens;
  weight   [Lt]      re-weight factor of the position (1 when not re-weighted; negative allowed);
  start/end [Lt]     the cross-attention injection window of each position (fractions of the schedule).
The paper's edited cross-attention map of a target, for position j at step s:
  inside_j = weight_j * (injected_j * (A_src @ mapper)_j + (1 - injected_j) * A_tgt_j)
  new_j    = a_j(s) * inside_j + (1 - a_j(s)) * A_tgt_j,   a_j(s) = 1 inside the window, else 0
It is linear in the maps, so it folds into two attention calls (attention.py):
  new @ V = A_src @ (mapper diag(c) V) + A_tgt @ (diag(d) V)
  c = a * weight * injected,   d = a * weight * (1 - injected) + (1 - a).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from .schedules import Window


@dataclass(frozen=True)
class TargetEdit:
    mapper: torch.Tensor
    injected: torch.Tensor
    weight: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor

    def active(self, step: int, steps: int) -> torch.Tensor:
        """a [Lt]: 1 where position j is inside its window at this step (as Window.covers)."""
        lo = (self.start * steps).floor()
        hi = (self.end * steps).floor()
        return ((lo <= step) & (step < hi)).float()


@dataclass(frozen=True)
class CrossTerms:
    """One step's cross-attention edit in call space (Nk keys), rows in target order.

    mapper [T, Nk, Nk] (None: identity), c [T, Nk], d [T, Nk]; fold [T, Nk, Nk] = mapper diag(c)
    (None with an identity mapper: a product by c), computed once per step rather than per layer;
    a, weight, injected [T, Nk] for the explicit reference path.
    """

    mapper: torch.Tensor | None
    fold: torch.Tensor | None
    c: torch.Tensor
    d: torch.Tensor
    a: torch.Tensor
    weight: torch.Tensor
    injected: torch.Tensor
    needs_direct: bool
    """Whether any target keeps part of its own attention (refine, re-weight, or outside a window)."""
    needs_fold: bool
    """Whether the target values change at all (False: identity mapper and c == 1)."""
    prepared: dict = field(default_factory=dict, compare=False, repr=False)
    """attention.CrossCall of each batch arrangement (attention.prepare_cross), built at the step's first layer."""


def _to_call_space(own: torch.Tensor, nk: int) -> torch.Tensor:
    """[..., L] -> [..., nk]: key j of the call is position j % L of the prompt.

    ComfyUI repeats a shorter conditioning to a common length; repeated keys split the
    attention equally, so position values repeat and mapper columns are divided (see mapper_call).
    """
    length = own.shape[-1]
    if nk % length:
        raise ValueError(f"the conditioning has {nk} tokens, not a multiple of the prompt's {length}")
    return own.tile(nk // length) if nk != length else own


def mapper_call(mapper: torch.Tensor, nk: int) -> torch.Tensor:
    """[Ls, Lt] -> [nk, nk] with W_call[i, j] = W[i % Ls, j % Lt] / (nk / Lt)."""
    ls, lt = mapper.shape
    if nk % ls or nk % lt:
        raise ValueError(f"the conditioning has {nk} tokens, not a multiple of the prompts' {ls} and {lt}")
    return mapper.tile(nk // ls, nk // lt) / (nk // lt)


def _to_device(tensors: list[torch.Tensor | None], device: torch.device, dtype: torch.dtype) -> list:
    """The step's small tensors moved in one copy: on CUDA from pinned memory, without blocking,
    since a copy from pageable memory would wait for the queued layers (a sync at every step)."""
    present = [t for t in tensors if t is not None]
    flat = torch.cat([t.reshape(-1) for t in present]).to(dtype)
    if device.type == "cuda":
        flat = flat.pin_memory()
    flat = flat.to(device, non_blocking=True)
    parts = iter(flat.split([t.numel() for t in present]))
    return [None if t is None else next(parts).view(t.shape) for t in tensors]


@dataclass(frozen=True)
class EditPlan:
    """The whole edit: one TargetEdit per target row, the self-attention window and layers."""

    targets: tuple[TargetEdit, ...]
    self_window: Window
    self_min_factor: int = 4

    @staticmethod
    def for_target(
        mapper: torch.Tensor, injected: torch.Tensor, cross: Window, word_windows: dict[tuple[int, ...], Window]
    ) -> TargetEdit:
        lt = mapper.shape[1]
        start = torch.full((lt,), cross.start)
        end = torch.full((lt,), cross.end)
        for positions, window in word_windows.items():
            start[list(positions)] = window.start
            end[list(positions)] = window.end
        return TargetEdit(mapper, injected, torch.ones(lt), start, end)

    def reweighted(self, weights: list[dict[tuple[int, ...], float]]) -> EditPlan:
        """A new plan with each target's positions multiplied by its weights (composes)."""
        targets = []
        for edit, factors in zip(self.targets, weights, strict=True):
            weight = edit.weight.clone()
            for positions, factor in factors.items():
                weight[list(positions)] *= factor
            targets.append(replace(edit, weight=weight))
        return replace(self, targets=tuple(targets))

    def cross_terms(
        self, step: int, steps: int, nk: int, device: torch.device, dtype: torch.dtype
    ) -> CrossTerms | None:
        """This step's cross-attention edit, or None where every target attends as it would unedited."""
        a = torch.stack([_to_call_space(t.active(step, steps), nk) for t in self.targets])
        if not a.any():
            return None
        weight = torch.stack([_to_call_space(t.weight, nk) for t in self.targets])
        injected = torch.stack([_to_call_space(t.injected, nk) for t in self.targets])
        mappers = [mapper_call(t.mapper, nk) for t in self.targets]
        identity = all(torch.equal(m, torch.eye(nk)) for m in mappers)
        c = a * weight * injected
        d = a * weight * (1 - injected) + (1 - a)
        mapper = None if identity else torch.stack(mappers)
        fold = None if mapper is None else mapper * c[:, None, :]
        return CrossTerms(
            *_to_device([mapper, fold, c, d, a, weight, injected], device, dtype),
            needs_direct=bool(d.abs().max() > 0),
            needs_fold=not (identity and bool((c == 1).all())),
        )

    def self_active(self, step: int, steps: int, factor: int) -> bool:
        """Self-attention injection at this step, on a layer `factor` times coarser than the latent (its level
        as maps.layer_grid finds it: padded sides included)."""
        return factor >= self.self_min_factor and self.self_window.covers(step, steps)
