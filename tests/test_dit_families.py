"""The prompts of the joint-attention families added beside Flux and SD3 (a tiny Qwen-Image, a tiny Z-Image (NextDiT),
with tiny Qwen2.5-VL / Qwen3 text encoders on the real Qwen tokenizer, of ComfyUI's own classes and configs): the
word positions of the chat-template contexts, prompts of different lengths. Their edits (identity, fused ==
reference, injection, plain model after a run, errors, composition), and Chroma's and Flux.2's, are test_dit.py's
tests, parametrized over these families too."""

import pytest
import torch
from test_dit import WINDOWS, relative

from devtools import harness as comfy_harness
from devtools.graphs import edit_graph


def test_qwen_image_prompts_are_the_words_after_the_chat_template_and_padded_to_one_length(comfy):
    """ComfyUI's Qwen-Image encoder drops the template's system turn and `<|im_start|>user\\n`: the context
    starts at the prompt's first token and keeps the template's end (5 tokens); words from the BPE's word-start
    marks (`cat,` one word of `cat` and `,`; `unbelievably` two tokens), prompts padded to the longest."""
    clip = comfy.tiny_model("qwen_image")[1]
    encode_prompts = comfy.pack("host.prompts").encode_prompts
    conditioning, prompts = encode_prompts(clip, "a red cat, riding unbelievably", ["a blue dog", "a red cat"])
    source = prompts.source
    assert source.words == ("a", "red", "cat,", "riding", "unbelievably")
    assert source.find_phrase("cat") == [2, 3] and len(source.find_phrase("unbelievably")) == 2
    assert source.token_words[-5:] == (-1,) * 5  # <|im_end|> \n <|im_start|> assistant \n
    assert source.length == 7 + 5
    assert {p.length for p in prompts.all} == {conditioning[0][0].shape[1]}
    assert prompts.targets[0].words == ("a", "blue", "dog")
    assert prompts.targets[0].token_words == (0, 1, 2) + (-1,) * (5 + 4)  # the template's end, then 4 pads
    assert "attention_mask" not in conditioning[0][1]
    with pytest.raises(ValueError, match=r"'zebra' is not in the prompt 'a blue dog' \(its words: a blue dog\)"):
        prompts.targets[0].find_phrase("zebra")


@pytest.mark.parametrize("family", ["qwen_image", "z_image"])
def test_prompts_of_different_lengths_are_edited(captured, family):
    """A target shorter than the source is padded (Z-Image's model pads the context further, to 32 tokens, and
    the re-weight factors with 1): the edit runs and equals its reference."""
    weights = ("Reweight", {"weights": "dog=2.5", **WINDOWS})
    settings = dict(family=family, target="a blue dog", edit="AttentionRefine", chain=[weights], steps=2)
    comfy_harness.run_graph(edit_graph(**settings, capture="fused"))
    comfy_harness.run_graph(edit_graph(**settings, capture="reference", reference=True))
    assert torch.isfinite(captured["fused"]).all()
    assert relative(captured["fused"], captured["reference"]) < 1e-4
