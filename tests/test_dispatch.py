"""Host cost of the fused edit: the operations one edited attention call dispatches beyond the plain call.

On a GPU every dispatched operation is host time (issue 17); the bounds are the issue's targets: at most 4
more operations per edited call for a word swap or a self-attention injection, at most 8 for a refine or a
re-weight (the direct term included). Counted with a TorchDispatchMode on the CPU, the one-call (CUDA) path,
after the step's preparation (`prepare_cross`, once per step for every layer).
"""

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from p2p_core.attention import RowLayout, cross_call, prepare_cross, self_call
from p2p_core.edits import EditPlan
from p2p_core.schedules import Window

HEADS, DIM, LENGTH = 8, 40, 77
LAYOUT = RowLayout((2,), 1)
"""cfg batch of 4: an unconditional chunk, then source and target."""


class Operations(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.count: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def sdpa(q, k, v):
    split = lambda t: t.reshape(t.shape[0], -1, HEADS, DIM).transpose(1, 2)  # noqa: E731
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(q.shape[0], -1, HEADS * DIM)


def operations(fn, *args) -> int:
    with Operations() as ops:
        fn(*args)
    return sum(ops.count.values())


def plan(mapper: torch.Tensor, injected: torch.Tensor, weight: float = 1.0) -> EditPlan:
    edit = EditPlan.for_target(mapper, injected, Window(0, 1), {})
    plan = EditPlan((edit,), Window(0, 1))
    return plan.reweighted([{(5,): weight}]) if weight != 1.0 else plan


SWAP = torch.eye(LENGTH)
LONGER_SWAP = torch.eye(LENGTH)[:, torch.tensor([0, 1, 2, 2, *range(3, LENGTH - 1)])] * torch.tensor(
    [1.0, 1, 0.5, 0.5, *([1.0] * (LENGTH - 4))]
)
"""Source word 2 split over target positions 2 and 3 (a word of one token swapped for one of two)."""
NEW_TOKENS = torch.tensor([1.0] * 4 + [0.0] * 3 + [1.0] * (LENGTH - 7))
CASES = {
    "word swap": (plan(SWAP, torch.ones(LENGTH)), 4),
    "word swap, 1 -> 2 tokens": (plan(LONGER_SWAP, torch.ones(LENGTH)), 4),
    "refine": (plan(SWAP, NEW_TOKENS), 8),
    "re-weight": (plan(SWAP, torch.ones(LENGTH), 2.0), 8),
    "refine + re-weight": (plan(SWAP, NEW_TOKENS, -1.0), 8),
}


@pytest.mark.parametrize("name", list(CASES))
def test_an_edited_cross_attention_call_adds_few_operations(name):
    edit_plan, bound = CASES[name]
    terms = edit_plan.cross_terms(0, 10, LENGTH, torch.device("cpu"), torch.float32)
    g = torch.Generator().manual_seed(0)
    q = torch.randn(4, 256, HEADS * DIM, generator=g)
    k, v = (torch.randn(4, LENGTH, HEADS * DIM, generator=g) for _ in range(2))
    call = prepare_cross(LAYOUT, terms, q.shape[0], q.device)
    extra = operations(cross_call, q.clone(), k, v, sdpa, call) - operations(sdpa, q, k, v)
    assert extra <= bound, f"{name}: {extra} operations over the plain call"


def test_a_self_attention_injection_adds_few_operations():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(4, 256, HEADS * DIM, generator=g) for _ in range(3))
    rows = LAYOUT.rows(q.shape[0], q.device)
    assert operations(self_call, q, k, v, sdpa, rows) - operations(sdpa, q, k, v) <= 4
