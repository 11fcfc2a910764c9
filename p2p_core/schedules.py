"""When an edit acts: windows along the sampling schedule, and where a sampler is on it.

Progress is an integer step of the sampler's own sigma schedule: an evaluation at a sigma
between two scheduled sigmas (heun, dpmpp_2s, ...) belongs to the step that starts above it,
so every model call of one step gets the same answer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:-\s*({_NUMBER}))?\s*$")


@dataclass(frozen=True)
class Window:
    """A fraction of the schedule, `start <= progress < end`, both in [0, 1]."""

    start: float
    end: float

    @classmethod
    def parse(cls, value: float | str, what: str) -> Window:
        """`0.8` means the first 80 % of the steps; `"0.2-0.6"` a range."""
        if isinstance(value, str):
            match = _RANGE.match(value)
            if not match:
                raise ValueError(f"{what}: {value!r} is not a fraction (like 0.8) or a range (like 0.2-0.6)")
            start, end = (float(match[1]), float(match[2])) if match[2] else (0.0, float(match[1]))
        else:
            start, end = 0.0, float(value)
        if not (0.0 <= start <= end <= 1.0) or math.isnan(start) or math.isnan(end):
            raise ValueError(f"{what}: {value!r} must lie in 0..1 with start <= end")
        return cls(start, end)

    def covers(self, step: int, steps: int) -> bool:
        """Whether step `step` of `steps` lies inside, counted as the reference does."""
        return int(self.start * steps) <= step < int(self.end * steps)


def parse_word_values(text: str, what: str) -> list[tuple[str, str]]:
    """`"lemon=0.2, cake=0.1-0.6"` -> [("lemon", "0.2"), ("cake", "0.1-0.6")], without eval.

    A word may be a phrase ("sports car=0.5"). Values stay strings for the caller to parse.
    """
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        word, sep, value = item.rpartition("=")
        if not sep or not word.strip() or not value.strip():
            raise ValueError(f"{what}: {item!r} is not of the form word=value")
        pairs.append((word.strip(), value.strip()))
    return pairs


def parse_number(value: str, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not a number") from None
    if not (low <= number <= high):
        raise ValueError(f"{what}: {value!r} is out of range {low}..{high}")
    return number


def schedule_step(sigma: float, sample_sigmas: torch.Tensor) -> tuple[int, int]:
    """(step, steps): the step of `sample_sigmas` [steps + 1] whose interval holds `sigma`."""
    sigmas = sample_sigmas.detach().float().cpu().tolist()
    steps = max(len(sigmas) - 1, 1)
    step = sum(1 for s in sigmas[:-1] if s * (1.0 + 1e-4) >= sigma) - 1
    return min(max(step, 0), steps - 1), steps
