"""Unit tests of the pure p2p_core maths (no ComfyUI): schedules, parsing, fused == reference."""

import pytest
import torch

from p2p_core.attention import (
    RowLayout,
    apply_maps,
    attention_maps,
    fused_cross_attention,
    fused_self_attention,
    query_chunk,
    reference_cross_attention,
    reference_self_attention,
)
from p2p_core.edits import EditPlan
from p2p_core.schedules import Window, parse_word_values, schedule_step
from p2p_core.tokens import PromptTokens, find_word

HEADS, DIM = 4, 8


def sdpa(q, k, v):
    split = lambda t: t.reshape(t.shape[0], -1, HEADS, DIM).transpose(1, 2)  # noqa: E731
    out = torch.nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    return out.transpose(1, 2).reshape(q.shape[0], -1, HEADS * DIM)


def random_plan(targets: int, length: int = 77, refine: bool = True, generator=None) -> EditPlan:
    edits = []
    for _ in range(targets):
        mapper = torch.rand(length, length, generator=generator)
        injected = (torch.rand(length, generator=generator) > 0.3).float() if refine else torch.ones(length)
        edits.append(
            EditPlan.for_target(mapper, injected, Window(0.0, 0.6), {(3, 4): Window(0.1, 0.9), (7,): Window(0, 0)})
        )
    return EditPlan(tuple(edits), Window(0.0, 0.4))


def batch(rows: int, nq: int, nk: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, n, HEADS * DIM, generator=g) for n in (nq, nk, nk)]


# Two conditional chunks of 3 rows (source + 2 targets) after an unconditional chunk.
LAYOUT = RowLayout((3, 6), 2)
TARGET = [4, 5, 7, 8]


def test_row_layout():
    assert LAYOUT.pairs() == [(3, 4, 0), (3, 5, 1), (6, 7, 0), (6, 8, 1)]
    assert [t.tolist() for t in LAYOUT.index(torch.device("cpu"))] == [[3, 3, 6, 6], TARGET, [0, 1, 0, 1]]


@pytest.mark.parametrize("chunk", [None, 16, 24])
@pytest.mark.parametrize("refine", [False, True])
@pytest.mark.parametrize("nk", [77, 154])
@pytest.mark.parametrize("step", [0, 2, 7])
def test_fused_cross_attention_equals_reference(refine, nk, step, chunk):
    g = torch.Generator().manual_seed(1)
    plan = random_plan(2, refine=refine, generator=g).reweighted([{(5,): 2.0}, {(6, 9): -1.0}])
    plan = plan.reweighted([{(5,): 0.5}, {}])  # chained re-weights compose
    terms = plan.cross_terms(step, 10, nk, torch.device("cpu"), torch.float32)
    q, k, v = batch(9, 64, nk)
    expected = reference_cross_attention(q.clone(), k.clone(), v.clone(), HEADS, LAYOUT, terms)
    fused = fused_cross_attention(q.clone(), k.clone(), v.clone(), sdpa, LAYOUT, terms, chunk)
    assert (fused - expected).abs().max() < 1e-5
    # Rows outside the edit (unconditional chunk, sources) are the kernel's own, bit for bit.
    plain = sdpa(q, k, v)
    untouched = [0, 1, 2, 3, 6]
    assert torch.equal(fused[untouched], plain[untouched])
    assert (fused[TARGET] - plain[TARGET]).abs().max() > 1e-3


@pytest.mark.parametrize("chunk", [None, 16])
def test_a_direct_term_called_per_chunk_equals_the_reference(chunk):
    """With attend_rows (another pack's patch wraps the kernel), the direct term is one kernel call per
    conditional chunk on its target rows alone, not more rows of the whole batch's call."""
    g = torch.Generator().manual_seed(4)
    terms = random_plan(2, generator=g).cross_terms(2, 10, 77, torch.device("cpu"), torch.float32)
    assert terms.needs_direct
    q, k, v = batch(9, 64, 77)
    whole_batch: list[int] = []
    per_chunk: list[tuple[int, int]] = []

    def attend(q, k, v):
        whole_batch.append(q.shape[0])
        return sdpa(q, k, v)

    def attend_rows(rows: slice):
        per_chunk.append((rows.start, rows.stop))
        return sdpa

    expected = reference_cross_attention(q.clone(), k.clone(), v.clone(), HEADS, LAYOUT, terms)
    fused = fused_cross_attention(q.clone(), k.clone(), v.clone(), attend, LAYOUT, terms, chunk, attend_rows)
    assert (fused - expected).abs().max() < 1e-5
    assert per_chunk == [(4, 6), (7, 9)]
    assert set(whole_batch) == {9}, "the whole batch's call holds more rows than the batch"


@pytest.mark.parametrize("chunk", [None, 16, 24])
def test_fused_word_swap_without_a_direct_term(chunk):
    g = torch.Generator().manual_seed(3)
    swap = EditPlan.for_target(torch.rand(77, 77, generator=g), torch.ones(77), Window(0, 1), {})
    terms = EditPlan((swap, swap), Window(0, 0)).cross_terms(0, 10, 77, torch.device("cpu"), torch.float32)
    assert terms.needs_fold and not terms.needs_direct
    q, k, v = batch(9, 64, 77)
    expected = reference_cross_attention(q.clone(), k.clone(), v.clone(), HEADS, LAYOUT, terms)
    fused = fused_cross_attention(q.clone(), k.clone(), v.clone(), sdpa, LAYOUT, terms, chunk)
    assert (fused - expected).abs().max() < 1e-5


@pytest.mark.parametrize("chunk", [None, 16, 24])
def test_fused_self_attention_equals_reference(chunk):
    q, k, v = batch(9, 64, 64)
    expected = reference_self_attention(q.clone(), k.clone(), v.clone(), HEADS, LAYOUT)
    fused = fused_self_attention(q.clone(), k.clone(), v.clone(), sdpa, LAYOUT, chunk)
    assert (fused - expected).abs().max() < 1e-5


def test_query_chunks_write_the_output_into_the_query_buffer():
    g = torch.Generator().manual_seed(2)
    terms = random_plan(2, generator=g).cross_terms(0, 10, 77, torch.device("cpu"), torch.float32)
    q, k, v = batch(9, 64, 77)
    out = fused_cross_attention(q, k, v, sdpa, LAYOUT, terms, chunk=16)
    assert out.data_ptr() == q.data_ptr()
    assert query_chunk(q, budget=9 * 32 * 4 * 10) == 10


def test_reference_follows_the_paper_for_a_word_swap():
    """Inside the window a swap gives the target exactly the source's map through the mapper."""
    length = 77
    mapper = torch.eye(length)[torch.randperm(length, generator=torch.Generator().manual_seed(0))]
    plan = EditPlan((EditPlan.for_target(mapper, torch.ones(length), Window(0, 1), {}),), Window(0, 0))
    terms = plan.cross_terms(0, 10, length, torch.device("cpu"), torch.float32)
    q, k, v = batch(2, 16, length)
    out = reference_cross_attention(q, k, v, HEADS, RowLayout((0,), 1), terms)
    maps = attention_maps(q, k, HEADS)
    expected = apply_maps((maps[0] @ mapper)[None], v[1:], HEADS)
    assert torch.allclose(out[1:], expected, atol=1e-6)


def test_outside_every_window_nothing_is_edited():
    plan = random_plan(1)
    assert plan.cross_terms(9, 10, 77, torch.device("cpu"), torch.float32) is None
    assert not plan.self_active(4, 10, 4.0)
    assert plan.self_active(3, 10, 4.0)
    assert not plan.self_active(3, 10, 2.0)


def test_window_parsing():
    assert Window.parse(0.8, "x") == Window(0.0, 0.8)
    assert Window.parse("0.1-0.6", "x") == Window(0.1, 0.6)
    assert Window(0.0, 0.8).covers(39, 50) and not Window(0.0, 0.8).covers(40, 50)
    for bad in ("1.5", "0.6-0.1", "abc", "__import__('os')"):
        with pytest.raises(ValueError, match="cake"):
            Window.parse(bad, "word_schedule 'cake'")


def test_word_values_are_parsed_without_eval():
    assert parse_word_values("lemon=0.2, cake=0.1-0.6, sports car=1", "w") == [
        ("lemon", "0.2"),
        ("cake", "0.1-0.6"),
        ("sports car", "1"),
    ]
    with pytest.raises(ValueError, match="'lemon'"):
        parse_word_values("lemon", "w")


def test_schedule_step_follows_the_sigmas():
    sigmas = torch.tensor([14.6, 8.0, 4.0, 2.0, 1.0, 0.0])
    assert schedule_step(14.6, sigmas) == (0, 5)
    assert schedule_step(8.0, sigmas) == (1, 5)
    # heun / dpmpp_2s evaluate between two scheduled sigmas: same step as the one starting above.
    assert schedule_step(5.5, sigmas) == (1, 5)
    assert schedule_step(0.5, sigmas) == (4, 5)
    assert schedule_step(1e-3, sigmas) == (4, 5)


def _prompt(text: str) -> PromptTokens:
    """A PromptTokens with one position per word (no tokenizer needed for the word finder)."""
    words = tuple(text.split())
    return PromptTokens(text, words, tuple(range(len(words))), tuple(range(len(words))))


def test_one_word_finder_names_the_input_the_word_and_every_prompt():
    cat, dog = _prompt("a red cat"), _prompt("a big dog")
    assert find_word([cat, dog], "dog", "words") == [None, [2]]
    assert find_word([cat, dog], "Cat,", "words") == [[2], None]
    with pytest.raises(ValueError) as missing:
        find_word([cat, dog], "zebra", "target_words")
    message = str(missing.value)
    assert message.startswith("target_words: the word 'zebra' is not in the prompt 'a red cat'")
    assert "'a big dog' (its words: a big dog)" in message
    with pytest.raises(ValueError, match="weights: empty word"):
        find_word([cat], " , ", "weights")
