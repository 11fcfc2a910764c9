"""Unit tests of the joint-attention edit of p2p_core (pure torch): fused == reference, identity, maps."""

from dataclasses import replace

import pytest
import torch

from p2p_core.attention import RowLayout
from p2p_core.blending import gaussian_smooth
from p2p_core.joint import JointLayout, JointTerms, fused_joint_attention, reference_joint_attention
from p2p_core.joint_maps import SMOOTHING_SIGMA, JointMapCall, image_text_maps, reference_image_text_maps, word_columns
from p2p_core.joint_plan import JointPlan
from p2p_core.schedules import Window
from p2p_core.tokens import PromptSet, PromptTokens

HEADS, DIM = 4, 16
TEXT, IMAGE = 7, 20


def sdpa(q, k, v):
    """ComfyUI's attention_pytorch with skip_reshape=True: [B, H, N, D] in, [B, N, H*D] out."""
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def batch(rows: int, seed: int = 0, scale: float = 1.5) -> list[torch.Tensor]:
    """q, k, v [rows, H, N, D]; q and k scaled so that the maps are far from uniform."""
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(rows, HEADS, TEXT + IMAGE, DIM, generator=g) for _ in range(3))
    return [q * scale, k * scale, v]


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


ORDERS = [JointLayout(TEXT, IMAGE, True), JointLayout(TEXT, IMAGE, False)]
ROWS = {
    "one target": (2, RowLayout((0,), 1)),
    # An unconditional chunk (rows 0-2), then two conditional chunks of a source and two targets.
    "two chunks, two targets": (9, RowLayout((3, 6), 2)),
}
TARGET_ROWS = {"one target": [1], "two chunks, two targets": [4, 5, 7, 8]}


def scales(targets: int, seed: int = 5) -> torch.Tensor:
    """[T, TEXT] factors: two words re-weighted per target, one of them negative (the fader's range)."""
    c = torch.ones(targets, TEXT)
    c[:, 2] = 2.0 + torch.arange(targets)
    c[:, 4:6] = -1.0
    return c


def mapped_keys(targets: int) -> torch.Tensor:
    """[T, TEXT] source text tokens: tokens 2 and 3 swapped (a swap), token 4 the target's own (an added word)."""
    keys = torch.arange(TEXT).repeat(targets, 1)
    keys[:, [2, 3]] = torch.tensor([3, 2])
    keys[:, 4] = -1
    return keys


@pytest.mark.parametrize("tokens", ORDERS, ids=["txt-img", "img-txt"])
@pytest.mark.parametrize("rows_name", list(ROWS))
@pytest.mark.parametrize(
    "inject, reweight, keys", [(True, False, False), (True, True, False), (False, True, False), (True, False, True),
                               (True, True, True)]
)
def test_fused_joint_attention_equals_reference(tokens, rows_name, inject, reweight, keys):
    size, rows = ROWS[rows_name]
    terms = JointTerms(inject, scales(rows.targets) if reweight else None, mapped_keys(rows.targets) if keys else None)
    q, k, v = batch(size)
    expected = reference_joint_attention(q.clone(), k.clone(), v.clone(), rows, tokens, terms)
    fused = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, terms)
    assert fused.shape == (size, TEXT + IMAGE, HEADS * DIM)
    assert relative_error(fused, expected) < 1e-4
    # The edit changes every target row against the same rows attended unedited; the others are untouched.
    plain = sdpa(q, k, v)
    targets = TARGET_ROWS[rows_name]
    others = [r for r in range(size) if r not in targets]
    for row in targets:
        assert relative_error(fused[row], plain[row]) > 0.05
    assert relative_error(fused[others], plain[others]) < 1e-6
    if not reweight:
        assert torch.equal(fused[others], plain[others])


@pytest.mark.parametrize("tokens", ORDERS, ids=["txt-img", "img-txt"])
def test_identity_edit_is_bit_identical_to_the_source(tokens):
    """Target == source (same prompt, same noise): the targets come out as their source, bit for bit."""
    rows = RowLayout((3, 6), 2)
    # An unconditional chunk (rows 0-2), then two chunks of a source and two copies of it.
    q, k, v = (t[[0, 1, 2, 3, 3, 3, 4, 4, 4]] for t in batch(5, seed=1))
    out = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, None))
    for source, target, _ in rows.pairs():
        assert torch.equal(out[target], out[source])
    assert torch.equal(out, sdpa(q, k, v))
    # The source's text keys through the identity mapper: two kernel calls, the same rows bit for bit.
    keys = torch.arange(TEXT).repeat(rows.targets, 1)
    mapped = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, None, keys))
    for source, target, _ in rows.pairs():
        assert torch.equal(mapped[target], mapped[source])


@pytest.mark.parametrize("tokens", ORDERS, ids=["txt-img", "img-txt"])
def test_image_queries_read_the_source_text_keys_through_the_mapper(tokens):
    """With text_keys the target's image queries attend the source's text keys (token j: the source's m(j),
    its own where m(j) = -1); its text queries keep its own text keys."""
    q, k, v = batch(2, seed=7)
    rows = RowLayout((0,), 1)
    text, image = tokens.text_slice, tokens.image_slice
    keys = mapped_keys(1)
    own = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, None))
    out = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, None, keys))
    q_in, k_in = _injected(q, k, tokens)
    k_mapped = k_in.clone()
    source_text, target_text = k[0, :, text], k[1, :, text]
    for j, m in enumerate(keys[0].tolist()):
        k_mapped[1, :, text][:, j] = source_text[:, m] if m >= 0 else target_text[:, j]
    assert relative_error(out[1, image], sdpa(q_in, k_mapped, v)[1, image]) < 1e-6
    assert relative_error(out[1, image], own[1, image]) > 0.05
    assert relative_error(out[1, text], own[1, text]) < 1e-6
    assert torch.equal(out[0], own[0])


@pytest.mark.parametrize("tokens", ORDERS, ids=["txt-img", "img-txt"])
def test_reweight_scales_image_queries_only(tokens):
    """Text queries keep their own values; image queries read the re-weighted text columns."""
    q, k, v = batch(2, seed=4)
    rows = RowLayout((0,), 1)
    plain = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, None))
    weighted = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, scales(1)))
    text, image = tokens.text_slice, tokens.image_slice
    assert relative_error(weighted[1, text], plain[1, text]) < 1e-6
    assert relative_error(weighted[1, image], plain[1, image]) > 0.05
    # Not renormalised: a factor of 0 on every text token leaves the image queries' image part alone.
    no_text = fused_joint_attention(
        q.clone(), k.clone(), v.clone(), sdpa, rows, tokens, JointTerms(True, torch.zeros(1, TEXT))
    )
    v_image = v.clone()
    v_image[:, :, text] = 0
    assert relative_error(no_text[1, image], sdpa(*_injected(q, k, tokens), v_image)[1, image]) < 1e-6


def _injected(q: torch.Tensor, k: torch.Tensor, tokens: JointLayout) -> list[torch.Tensor]:
    """q, k with row 1's image tokens := row 0's."""
    out = [q.clone(), k.clone()]
    for t in out:
        t[1, :, tokens.image_slice] = t[0, :, tokens.image_slice]
    return out


@pytest.mark.parametrize("tokens", ORDERS, ids=["txt-img", "img-txt"])
@pytest.mark.parametrize("many", [False, True], ids=["two words", "more words than the head dim"])
def test_word_maps_equal_the_full_softmax_sliced(tokens, many):
    q, k, _ = batch(3, seed=2)
    words = [[[1], [2, 3]], [[4], [2, 3]], [[0, 6], [5]]]  # per row: two words (a word may span tokens)
    if many:  # DIM + 2 words per row: two kernel calls
        words = [per_row + [[p % TEXT] for p in range(DIM)] for per_row in words]
    columns = torch.stack([word_columns(per_row, TEXT) for per_row in words])
    maps = image_text_maps(q, k, sdpa, tokens, columns)
    full = torch.softmax(q @ k.transpose(-1, -2) * DIM**-0.5, -1).mean(1)  # [B, N, N]
    sliced = full[:, tokens.image_slice][:, :, tokens.text_slice]  # [B, image, text]
    expected = torch.stack(
        [torch.stack([sliced[b][:, positions].sum(-1) for positions in per_row]) for b, per_row in enumerate(words)]
    )
    assert maps.shape == (3, len(words[0]), IMAGE)
    assert relative_error(maps, expected) < 1e-5
    assert relative_error(reference_image_text_maps(q, k, tokens, columns), expected) < 1e-5
    shared = image_text_maps(q, k, sdpa, tokens, columns[0])  # one set of words for every row
    assert relative_error(shared[0], expected[0]) < 1e-5


@pytest.mark.parametrize("reference", [False, True], ids=["fused", "reference"])
def test_joint_map_call_gives_each_rows_word_positions_summed_over_repeats(reference):
    """A prompt of 4 positions (start, two words, end) repeated twice in the call's 8 text tokens; an unconditional
    chunk (rows 0-1) and a conditional one (rows 2-3) on a 4 x 5 image grid."""
    positions = (-1, 0, 1, -1)
    source = PromptTokens("a cat", ("a", "cat"), (0, 1, 5, 2), positions)
    prompts = PromptSet(source, (PromptTokens("a dog", ("a", "dog"), (0, 1, 6, 2), positions),))
    tokens = JointLayout(8, 20)
    g = torch.Generator().manual_seed(3)
    q, k = (1.5 * torch.randn(4, HEADS, 28, DIM, generator=g) for _ in range(2))
    call = JointMapCall(q, k, None if reference else sdpa, tokens, prompts, (4, 5), (0, 1), [2])
    maps = call.maps()
    full = torch.softmax(q @ k.transpose(-1, -2) * DIM**-0.5, -1).mean(1)[2:, 8:, :8]  # [R, image, text]
    per_position = full.reshape(2, 20, 2, 4).sum(2).transpose(1, 2)  # key j is position j % 4
    expected = gaussian_smooth(per_position[:, 1:3].reshape(4, 4, 5), SMOOTHING_SIGMA).reshape(2, 2, 20)
    assert maps.shape == (2, 4, 20)
    assert relative_error(maps[:, 1:3], expected) < 1e-5
    assert bool((maps[:, [0, 3]] == 0).all())  # start and end tokens: no word
    odd = JointMapCall(q[:, :, 1:], k[:, :, 1:], sdpa, JointLayout(7, 20), prompts, (4, 5), (0, 1), [2])
    with pytest.raises(ValueError, match="7 context tokens, not a multiple of the prompt's 4"):
        odd.maps()


@pytest.mark.parametrize("text_first", [True, False], ids=["txt-img", "img-txt"])
@pytest.mark.parametrize("reference", [False, True], ids=["fused", "reference"])
def test_joint_map_call_reads_the_grid_and_the_context_among_every_key(reference, text_first):
    """Z-Image pads the context (8 tokens, a prompt of 4 twice) with 3 tokens and the image (a 4 x 5 grid) with 6;
    Flux Kontext appends a reference image's tokens to the image's: the maps are the grid's queries on the
    context's positions, the softmax over all 37 keys (the padding's and the extra image tokens' included)."""
    positions = (-1, 0, 1, -1)
    source = PromptTokens("a cat", ("a", "cat"), (0, 1, 5, 2), positions)
    prompts = PromptSet(source, (PromptTokens("a dog", ("a", "dog"), (0, 1, 6, 2), positions),))
    tokens = JointLayout(11, 26, text_first)
    g = torch.Generator().manual_seed(4)
    q, k = (1.5 * torch.randn(2, HEADS, 37, DIM, generator=g) for _ in range(2))
    call = JointMapCall(q, k, None if reference else sdpa, tokens, prompts, (4, 5), (0, 1), [0], context=8)
    full = torch.softmax(q @ k.transpose(-1, -2) * DIM**-0.5, -1).mean(1)  # [R, N, N] over every key
    grid = slice(tokens.image_slice.start, tokens.image_slice.start + 20)
    context = slice(tokens.text_slice.start, tokens.text_slice.start + 8)
    per_position = full[:, grid, context].reshape(2, 20, 2, 4).sum(2).transpose(1, 2)  # key j: position j % 4
    expected = gaussian_smooth(per_position[:, 1:3].reshape(4, 4, 5), SMOOTHING_SIGMA).reshape(2, 2, 20)
    maps = call.maps()
    assert maps.shape == (2, 4, 20)
    assert relative_error(maps[:, 1:3], expected) < 1e-5
    with pytest.raises(ValueError, match="a grid of 30 image tokens does not fit the call's 26"):
        replace(call, grid=(5, 6)).maps()


def test_plan_injects_in_its_blocks_and_window_and_reweights_everywhere():
    plan = JointPlan(1, frozenset({("double", 0), ("single", 2)}), Window(0.0, 0.5))
    cpu, f32 = torch.device("cpu"), torch.float32
    assert plan.terms(("double", 0), 0, 10, TEXT, cpu, f32) == JointTerms(True, None)
    assert plan.terms(("double", 0), 5, 10, TEXT, cpu, f32) is None
    assert plan.terms(("double", 1), 0, 10, TEXT, cpu, f32) is None
    assert plan.terms(None, 0, 10, TEXT, cpu, f32) is None
    weighted = plan.reweighted([{(2,): 2.0, (4, 5): -1.0}], TEXT).reweighted([{(2,): 1.5}], TEXT)
    assert torch.equal(weighted.text_weights, scales(1) * torch.tensor([1, 1, 1.5, 1, 1, 1, 1]))
    terms = weighted.terms(("double", 1), 7, 10, TEXT, cpu, f32)
    assert not terms.inject and torch.equal(terms.text_scale, weighted.text_weights)
    assert plan.reweighted([{(2,): 1.0}], TEXT).terms(("double", 1), 0, 10, TEXT, cpu, f32) is None
    # The text sources go with the injection only.
    mapped = replace(plan, text_sources=mapped_keys(1))
    assert torch.equal(mapped.terms(("double", 0), 0, 10, TEXT, cpu, f32).text_keys, mapped_keys(1))
    assert mapped.terms(("double", 1), 0, 10, TEXT, cpu, f32) is None


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="30 tokens cannot hold 30 text tokens"):
        JointLayout.of_call(30, 30)
    assert JointLayout.of_call(27, TEXT, False) == JointLayout(TEXT, IMAGE, False)
    q, k, v = batch(2)
    with pytest.raises(ValueError, match=r"text_scale has shape \[1, 5\]"):
        fused_joint_attention(q, k, v, sdpa, RowLayout((0,), 1), ORDERS[0], JointTerms(False, torch.ones(1, 5)))
    with pytest.raises(ValueError, match="reach row 2 of a batch of 2"):
        fused_joint_attention(q, k, v, sdpa, RowLayout((0,), 2), ORDERS[0], JointTerms(True, None))
    with pytest.raises(ValueError, match="N = 8 text"):
        fused_joint_attention(q, k, v, sdpa, RowLayout((0,), 1), JointLayout(8, IMAGE), JointTerms(True, None))
    with pytest.raises(ValueError, match="word 1"):
        word_columns([[0], [TEXT]], TEXT)
    plan = JointPlan(1, frozenset(), Window(0, 1)).reweighted([{(2,): 2.0}], TEXT)
    with pytest.raises(ValueError, match="cover 7 text tokens, this call has 9"):
        plan.terms(None, 0, 10, 9, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match=r"positions \[7\]"):
        plan.reweighted([{(7,): 2.0}], TEXT)
    with pytest.raises(ValueError, match=r"text_keys has shape \[1, 5\]"):
        fused_joint_attention(q, k, v, sdpa, RowLayout((0,), 1), ORDERS[0], JointTerms(True, None, torch.zeros(1, 5)))
    with pytest.raises(ValueError, match="inject is off"):
        fused_joint_attention(q, k, v, sdpa, RowLayout((0,), 1), ORDERS[0], JointTerms(False, None, mapped_keys(1)))
    with pytest.raises(ValueError, match=r"outside 0\.\.6"):
        JointPlan(1, frozenset(), Window(0, 1), text_sources=torch.tensor([[0, 1, 2, 3, 4, 5, 7]]))
    with pytest.raises(ValueError, match="text sources cover 7 text tokens, this call has 9"):
        JointPlan(1, frozenset({("double", 0)}), Window(0, 1), text_sources=mapped_keys(1)).terms(
            ("double", 0), 0, 10, 9, torch.device("cpu"), torch.float32
        )


def test_fused_runs_in_the_models_dtype():
    """bf16 projections (Flux's usual dtype): the factors follow v's dtype, the output the kernel's."""
    size, rows = ROWS["two chunks, two targets"]
    q, k, v = (t.bfloat16() for t in batch(size, seed=6))
    terms = JointTerms(True, scales(rows.targets))
    fused = fused_joint_attention(q.clone(), k.clone(), v.clone(), sdpa, rows, ORDERS[1], terms)
    expected = reference_joint_attention(q, k, v, rows, ORDERS[1], terms)
    assert fused.dtype == torch.bfloat16
    assert relative_error(fused.float(), expected) < 2e-2
