"""Token alignment on the real CLIP tokenizer, through ComfyUI's tokenization (weights, long prompts)."""

import pytest
import torch


@pytest.fixture(scope="module")
def tokens(comfy):
    prompts = comfy.pack("host.prompts")
    clip = comfy.tiny_model("sd15")[1]
    return lambda text: prompts.prompt_tokens(clip, text)[0]


@pytest.fixture(scope="module")
def core(comfy):
    return comfy.pack("p2p_core.alignment")


def columns(mapper):
    """Target position -> sorted source positions feeding it."""
    return {j: torch.nonzero(mapper[:, j]).flatten().tolist() for j in range(mapper.shape[1])}


def test_words_and_positions_follow_the_tokenizer(tokens):
    prompt = tokens("a (red:1.2) cat riding a bicycle")
    assert prompt.words == ("a", "red", "cat", "riding", "a", "bicycle")
    assert prompt.length == 77 and prompt.token_words[0] == -1
    assert prompt.find_phrase("red") == [2]
    assert prompt.find_phrase("a bicycle") == [5, 6]
    with pytest.raises(ValueError, match=r"'dog'.*a red cat riding a bicycle"):
        prompt.find_phrase("dog")


def test_a_word_of_several_tokens_is_one_word(tokens):
    prompt = tokens("a photo of a capybara")
    positions = prompt.find_phrase("capybara")
    assert len(positions) > 1 and prompt.words[-1] == "capybara"


def test_replacement_keeps_the_words_around_a_swap_of_different_length(tokens, core):
    source = tokens("a cat riding a bicycle in the park")
    target = tokens("a cat riding a sports car in the park")
    mapper, injected = core.replacement_mapper(source, target)
    cols = columns(mapper)
    for word in ("cat", "riding", "park"):
        for s, t in zip(source.find_phrase(word), target.find_phrase(word), strict=True):
            assert cols[t] == [s]
    swapped = target.find_phrase("sports car")
    for t in swapped:
        assert cols[t] == source.find_phrase("bicycle")
        assert mapper[:, t].sum() == pytest.approx(1.0 / len(swapped) * len(source.find_phrase("bicycle")))
    assert cols[0] == [0]  # start token
    assert injected.min() == 1
    # The end token follows the last word, wherever it moved.
    s_end = max(source.find_phrase("park")) + 1
    t_end = max(target.find_phrase("park")) + 1
    assert cols[t_end] == [s_end]


def test_replacement_rejects_an_added_word(tokens, core):
    with pytest.raises(ValueError, match="'red'.*AttentionRefine"):
        core.replacement_mapper(tokens("a cat riding a bicycle"), tokens("a cat riding a red bicycle"))


def test_refinement_injects_aligned_tokens_only(tokens, core):
    source = tokens("a castle next to a river")
    target = tokens("children drawing of a castle next to a river")
    mapper, injected = core.refinement_mapper(source, target)
    cols = columns(mapper)
    for t in target.find_phrase("children drawing of"):
        assert injected[t] == 0 and cols[t] == []
    for s, t in zip(source.find_phrase("castle next to"), target.find_phrase("castle next to"), strict=True):
        assert injected[t] == 1 and cols[t] == [s]


def test_refinement_of_unrelated_prompts_is_an_error(tokens, core):
    with pytest.raises(ValueError, match="cannot be aligned"):
        core.refinement_mapper(tokens("a cat"), tokens("two dogs"))


def test_prompts_over_77_tokens_keep_their_positions(tokens, core):
    tail = ", ".join(["a small detail"] * 40) + ", a zebra"
    source = tokens(f"a cat riding a bicycle, {tail}")
    target = tokens(f"a cat riding a car, {tail}")
    assert source.length == target.length > 77
    mapper, _ = core.replacement_mapper(source, target)
    cols = columns(mapper)
    assert cols[77] == [77]  # start token of the second chunk
    s_last, t_last = source.find_phrase("zebra"), target.find_phrase("zebra")
    assert s_last and all(cols[t] == [s] for s, t in zip(s_last, t_last, strict=True))
