"""When and where the joint-attention edit acts: chosen blocks, windows of the schedule, word weights.

A block is named (block_type, block_index) as Flux sets them in `transformer_options` ("double" or
"single", i); the host adapter names the blocks of a family that sets neither (SD3) the same way.
The target rows' image-token q and k take the source's in `inject_blocks` while `inject_window`
covers the step (Shin et al. inject early in the schedule, in fewer blocks on few-step models), and
there the target's image queries read the source's text keys: text_sources [T, text] names, per
target and text token j of the call, the source token m(j) of the edit's token mapper (-1: none).
Re-weighting acts in every block while `weight_window` covers the step, on the text tokens of the
call: text_weights [T, text] holds each target's factor c per text token (1: not re-weighted), the
adapter having placed each word's positions among the call's text tokens (for SD3: in both its
CLIP and its T5 part).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .joint import JointTerms
from .schedules import Window

Block = tuple[str, int]
"""(block_type, block_index), e.g. ("double", 3) or ("single", 10)."""


@dataclass(frozen=True)
class JointPlan:
    """The edit of T target rows over a run: which blocks and steps inject, which text tokens weigh what."""

    targets: int
    inject_blocks: frozenset[Block]
    inject_window: Window
    text_weights: torch.Tensor | None = None
    """[T, text] factor c per target and text token of the call; None: nothing re-weighted."""
    weight_window: Window = Window(0.0, 1.0)
    text_sources: torch.Tensor | None = None
    """[T, text] long: per target and text token of the call (the host tiles the prompts' positions to a
    call's, as the weights), the source text token whose key its injected image queries read (-1: its own);
    None: every target keeps its own text keys."""

    def __post_init__(self) -> None:
        if self.text_sources is not None:
            sources = self.text_sources
            if sources.dtype != torch.long or sources.ndim != 2 or sources.shape[0] != self.targets:
                raise ValueError(f"text_sources must be [targets={self.targets}, text] long, got "
                                 f"{list(sources.shape)} {sources.dtype}")
            if sources.numel() and not bool(((sources >= -1) & (sources < sources.shape[1])).all()):
                raise ValueError(f"text_sources name source text tokens outside 0..{sources.shape[1] - 1}")

    def reweighted(self, weights: list[dict[tuple[int, ...], float]], text: int) -> JointPlan:
        """A new plan with each target's text positions multiplied by its factors (composes).

        weights: per target, {text positions of a word: factor}; text: the call's text tokens."""
        if len(weights) != self.targets:
            raise ValueError(f"re-weight: {len(weights)} sets of weights for {self.targets} targets")
        current = self.text_weights if self.text_weights is not None else torch.ones(self.targets, text)
        if current.shape[1] != text:
            raise ValueError(f"re-weight: the plan's weights cover {current.shape[1]} text tokens, not {text}")
        scaled = current.clone()
        for row, factors in zip(scaled, weights, strict=True):
            for positions, factor in factors.items():
                if not all(0 <= p < text for p in positions):
                    raise ValueError(f"re-weight: positions {list(positions)} are outside the {text} text tokens")
                row[list(positions)] *= factor
        return replace(self, text_weights=scaled)

    def terms(
        self, block: Block | None, step: int, steps: int, text: int, device: torch.device, dtype: torch.dtype
    ) -> JointTerms | None:
        """This call's edit, or None where every target attends as it would unedited.

        block: the call's block (None: unknown, no injection); step of steps: where the sampler is;
        text: the call's text tokens."""
        inject = block in self.inject_blocks and self.inject_window.covers(step, steps)
        keys = None
        if inject and self.text_sources is not None:
            if self.text_sources.shape[1] != text:
                raise ValueError(
                    f"the plan's text sources cover {self.text_sources.shape[1]} text tokens, this call has {text}"
                )
            keys = self.text_sources.to(device)
        scale = None
        if self.text_weights is not None and self.weight_window.covers(step, steps):
            if self.text_weights.shape[1] != text:
                raise ValueError(
                    f"the plan's weights cover {self.text_weights.shape[1]} text tokens, this call has {text}"
                )
            if not bool((self.text_weights == 1).all()):
                scale = self.text_weights.to(device=device, dtype=dtype)
        if not inject and scale is None:
            return None
        return JointTerms(inject, scale, keys)
