"""The word-level account of an alignment that the frontend shows (p2p_core/explain.py), and the
model-free tokenizer behind the /p2p/align route agreeing with the models' own."""

import pytest


@pytest.fixture(scope="module")
def prompts(comfy):
    return comfy.pack("host.prompts")


@pytest.fixture(scope="module")
def tokens(comfy, prompts):
    clip = comfy.tiny_model("sd15")[1]
    return lambda text: prompts.prompt_tokens(clip, text)[0]


@pytest.fixture(scope="module")
def account(comfy, tokens):
    alignment = comfy.pack("p2p_core.alignment")
    explain = comfy.pack("p2p_core.explain").explain

    def run(source: str, target: str, edit: str):
        src, tgt = tokens(source), tokens(target)
        mapper = alignment.replacement_mapper if edit == "replace" else alignment.refinement_mapper
        links, removed = explain(src, tgt, *mapper(src, tgt))
        return [(link.word, link.status, [src.words[i] for i in link.sources]) for link in links], [
            src.words[i] for i in removed
        ]

    return run


def test_a_swap_of_one_word_for_two(account) -> None:
    links, removed = account("a cat riding a bicycle", "a cat riding a sports car", "replace")
    assert links[:4] == [
        ("a", "kept", ["a"]),
        ("cat", "kept", ["cat"]),
        ("riding", "kept", ["riding"]),
        ("a", "kept", ["a"]),
    ]
    assert links[4:] == [("sports", "swapped", ["bicycle"]), ("car", "swapped", ["bicycle"])]
    assert removed == []


def test_a_refinement_adds_and_removes(account) -> None:
    links, removed = account("a castle next to a river", "a watercolor castle next to a lake", "refine")
    assert [(w, s) for w, s, _ in links if s != "kept"] == [("watercolor", "added"), ("lake", "added")]
    assert removed == ["river"]


def test_a_word_sharing_some_tokens_is_partly_kept(account, tokens) -> None:
    source, target = tokens("a capybara"), tokens("a capybaras")
    assert len(source.word_positions(1)) > 1, "the test needs a word of several tokens"
    shared = set(source.token_ids[p] for p in source.word_positions(1))
    assert shared & set(target.token_ids[p] for p in target.word_positions(1)), "no token in common"
    links, _ = account("a capybara", "a capybaras", "refine")
    assert links[1][:2] == ("capybaras", "partly kept")


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("text", ["a (red:1.3) capybara riding a bicycle", "photo, " * 60 + "a cat"])
def test_the_routes_tokenizer_agrees_with_the_models(comfy, prompts, family: str, text: str) -> None:
    """The route tokenizes without a model (ComfyUI's SD1 tokenizer); the nodes with the CLIP of the
    checkpoint. Words, token ids and positions must be the same, or the display would mislead."""
    from comfy.sd1_clip import SD1Tokenizer

    tokenizer = SD1Tokenizer()
    by_route = prompts.read_tokens(tokenizer, text, tokenizer.tokenize_with_weights(text, return_word_ids=True))[0]
    by_model = prompts.prompt_tokens(comfy.tiny_model(family)[1], text)[0]
    assert by_route == by_model
