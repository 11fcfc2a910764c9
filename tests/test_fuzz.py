"""Property-based fuzz of every string input of the pack's nodes and of `POST /p2p/align`.

Any text gives either a valid result or the pack's own error (a ValueError whose message names the
node or the input), never an exception from deep inside torch or Python; and the server keeps
serving. Bounded (15 examples per node input, 60 requests) so that the module runs in well under a minute
of CPU time.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devtools import harness as comfy_harness

comfy_harness.boot()
import comfy.sample  # noqa: E402

import nodes  # noqa: E402

SOURCE = "a red cat riding a bicycle"
TARGET = "a red cat riding a car"
PIECES = [
    "",
    " ",
    "\n",
    ",",
    ", ,",
    "=",
    "|",
    "-",
    "red",
    "car",
    "cat=2",
    "car=0.2-0.6",
    "car=1|2",
    "red=",
    "=2",
    "car=nan",
    "car=inf",
    "car=1e309",
    "car=-0",
    "(red:1.2)",
    "((red))",
    "[car]",
    "(car:nan)",
    "embedding:x",
    "embedding:",
    "embedding:../../etc/passwd",
    "BREAK",
    "a BREAK b",
    "\u200b",
    "\ufeff",
    "🚗",
    "très rouge",
    "猫",
    "\x00",
    "\t",
    "riding a",
    "sports car",
]
TEXT = st.one_of(
    st.sampled_from(PIECES),
    st.lists(st.sampled_from(PIECES), min_size=2, max_size=8).map(" ".join),
    st.lists(st.sampled_from(PIECES), min_size=2, max_size=8).map("".join),
    st.text(max_size=40),
    st.builds(lambda piece, n: piece * n, st.sampled_from(["car ", "a, ", "🚗", "(red:1.1) "]), st.integers(80, 400)),
)
FUZZ = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def named_error_or_result(call, *names: str):
    """call(), or None when it raised the pack's error naming one of `names`; anything else fails."""
    try:
        return call()
    except ValueError as error:  # the pack's UserError is one
        message = str(error)
        assert any(name.lower() in message.lower() for name in names), f"unnamed error: {message!r}"
        assert "Traceback" not in message
        return None


def pack_node(module: str, name: str):
    return getattr(comfy_harness.pack(f"nodes.{module}"), name)


@pytest.fixture(scope="module")
def tiny():
    model, clip, _ = comfy_harness.tiny_model("sd15")
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    conditioning, prompts = pack_node("prompt_pair", "PromptPair").execute(clip, SOURCE, TARGET).args
    return model, clip, negative, conditioning, prompts


def one_step(model, conditioning, negative) -> torch.Tensor:
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 0)
    return comfy.sample.sample(
        model, noise, 1, 5.0, "euler", "normal", conditioning, negative, latent, disable_pbar=True
    )


@FUZZ
@given(text=TEXT, which=st.sampled_from(["source", "target"]))
@example(text="a (red:nan) cat", which="source")  # found by this fuzz: a NaN weight made every row NaN
def test_prompt_pair_text(tiny, text, which):
    """Either prompt: encoded and edited (a refine accepts any pair) and sampled, or a named error."""
    model, clip, negative, _, _ = tiny
    prompts_in = {"source": SOURCE, "target": TARGET, which: text}
    pair = named_error_or_result(
        lambda: pack_node("prompt_pair", "PromptPair").execute(clip, **prompts_in).args, "PromptPair", which
    )
    if pair is None:
        return
    conditioning, prompts = pair
    assert conditioning[0][0].shape[0] == prompts.rows
    refine = pack_node("edit_nodes", "AttentionRefine")
    edited = named_error_or_result(
        lambda: refine.execute(model, prompts, cross_replace=0.8, self_replace=0.4).args[0], "prompt", which
    )
    if edited is not None:
        assert torch.isfinite(one_step(edited, conditioning, negative)).all()


@FUZZ
@given(text=TEXT)
def test_reweight_weights(tiny, text):
    model, _, negative, conditioning, prompts = tiny
    reweight = pack_node("edit_nodes", "Reweight")
    edited = named_error_or_result(lambda: reweight.execute(model, prompts, text, 0.8, 0.4).args[0], "weights")
    if edited is not None:
        assert torch.isfinite(one_step(edited, conditioning, negative)).all()


@FUZZ
@given(text=TEXT, edit=st.sampled_from(["AttentionReplace", "AttentionRefine"]))
def test_word_schedule(tiny, text, edit):
    model, _, negative, conditioning, prompts = tiny
    node = pack_node("edit_nodes", edit)
    edited = named_error_or_result(
        lambda: node.execute(model, prompts, cross_replace=0.8, self_replace=0.4, word_schedule=text).args[0],
        "word_schedule",
    )
    if edited is not None:
        assert torch.isfinite(one_step(edited, conditioning, negative)).all()


@FUZZ
@given(text=TEXT, which=st.sampled_from(["source_words", "target_words"]))
def test_local_blend_words(tiny, text, which):
    model, _, negative, conditioning, prompts = tiny
    words = {"source_words": "bicycle", "target_words": "car", which: text}
    blend = pack_node("local_blend", "LocalBlend")
    blended = named_error_or_result(
        lambda: blend.execute(model, prompts, threshold=0.5, blend_start=0.0, **words).args[0], "LocalBlend", which
    )
    if blended is not None:
        assert torch.isfinite(one_step(blended, conditioning, negative)).all()


@pytest.fixture(scope="module")
def recorded(tiny):
    """A model that recorded its maps while sampling the pair once, and those samples."""
    model, _, negative, conditioning, prompts = tiny
    recorder = pack_node("attention_maps", "AttentionMapRecorder").execute(model, prompts).args[0]
    return recorder, {"samples": one_step(recorder, conditioning, negative)}, prompts


@FUZZ
@given(text=TEXT)
def test_mask_extract_words(recorded, text):
    model, samples, prompts = recorded
    extract = pack_node("attention_maps", "AttentionMaskExtract")
    result = named_error_or_result(
        lambda: extract.execute(model, samples, prompts, text, 0.5).args, "AttentionMaskExtract", "words"
    )
    if result is not None:
        masks, heat = result
        assert masks.shape == (2, 64, 64) and torch.isfinite(heat).all()


ALIGN_FIELDS = ["weights", "word_schedule", "source_words", "target_words", "words"]
ALIGN_BODY = st.fixed_dictionaries(
    {
        "source": st.one_of(TEXT, st.just(SOURCE)),
        "target": st.one_of(TEXT, st.just(TARGET), TEXT.map(lambda t: f"{TARGET}\n{t}")),
        "edit": st.sampled_from(["replace", "refine"]),
        "checks": st.lists(
            st.fixed_dictionaries(
                {"field": st.sampled_from(ALIGN_FIELDS), "text": TEXT, "node": st.one_of(st.integers(), st.text())}
            ),
            max_size=3,
        ),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=ALIGN_BODY)
def test_align_route(comfy_server, body):
    response = comfy_server.post("/p2p/align", data=json.dumps(body))
    assert response.status_code in (200, 400), response.text
    answer = response.json()
    if response.status_code == 400:
        assert isinstance(answer["error"], str) and answer["error"]
        return
    assert len(answer["targets"]) >= 1
    for target in answer["targets"]:
        assert target["error"] is None or isinstance(target["error"], str)
    assert all(isinstance(problem["message"], str) for problem in answer["problems"])


def test_the_server_keeps_serving_after_the_fuzz(comfy_server):
    assert comfy_server.get("/system_stats").ok
    response = comfy_server.post("/p2p/align", json={"source": SOURCE, "target": TARGET, "edit": "replace"})
    assert response.status_code == 200 and response.json()["targets"][0]["error"] is None
