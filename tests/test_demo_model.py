"""The built-in demo model: scenes and detector, checkpoint, loader node, stock nodes on it, training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from demo.detect import detect, match
from demo.scenes import Scene, SceneObject, draw_scene, sample_scenes
from devtools.comfy_host import REPO

DEMO_MODELS = ["unet", "dit"]
"""The demo architectures (`demo.model.ARCHITECTURES`, which imports comfy: read once the host is up)."""


def checkpoint(architecture: str) -> Path:
    from demo.model import ARCHITECTURES

    return REPO / "demo" / ARCHITECTURES[architecture].checkpoint


def test_detector_reads_drawn_scenes() -> None:
    batch = sample_scenes(200, torch.Generator().manual_seed(7))
    scores = [match(s, detect(img)) for s, img in zip(batch.scenes, batch.images, strict=True)]
    assert sum(r["all"] for r in scores) / len(scores) >= 0.95
    assert sum(r["texture"] for r in scores) / len(scores) >= 0.95
    assert all(r["background"] == 1.0 for r in scores if r["background"] == r["background"])


def test_drawn_scene_masks_and_caption() -> None:
    scene = Scene([SceneObject("red", "circle"), SceneObject("blue", "square", "striped")], "yellow", "checkered")
    drawn = draw_scene(scene, [(8.0, 16.0), (24.0, 16.0)], [6.0, 5.0])
    assert scene.caption() == "a red circle next to a striped blue square on a checkered yellow background"
    assert drawn.images.shape == (1, 3, 32, 32) and drawn.masks.shape == (1, 2, 32, 32)
    assert not (drawn.masks[0, 0] & drawn.masks[0, 1]).any()
    found = detect(drawn.images[0])
    assert match(scene, found)["all"] == 1.0 and found.background == "yellow"


@pytest.mark.parametrize("colour", ["white", "black"])
def test_detector_keeps_a_striped_object_whole(colour: str) -> None:
    # The stripes' darker shade of white or black is close to a gray background: the object reads as
    # strips with background between them, and must still be one object with one mask.
    scene = Scene([SceneObject(colour, "square", "striped"), SceneObject("yellow", "triangle")], "gray")
    drawn = draw_scene(scene, [(9.0, 16.0), (24.0, 16.0)], [6.5, 5.0])
    found = detect(drawn.images[0])
    assert sorted(o.colour for o in found.objects) == sorted([colour, "yellow"])
    mask = drawn.masks[0, 0].numpy()
    striped = next(o.mask for o in found.objects if o.colour == colour)
    assert (mask & striped).sum() / (mask | striped).sum() >= 0.6


@pytest.mark.parametrize("architecture", DEMO_MODELS)
def test_checkpoint_fits_and_records_its_training(comfy, architecture: str) -> None:
    assert checkpoint(architecture).stat().st_size <= 25 * 2**20
    info = _info(checkpoint(architecture), architecture)
    assert info["steps"] > 0 and info["train_seconds"] > 0


def _graph(prompt: str, seed: int, batch: int) -> dict:
    """The quality benchmark's text-to-image graph, decoded and saved by the stock nodes."""
    from devtools.demo_graphs import Sampling, text_to_image_graph

    graph = text_to_image_graph(prompt, seed, Sampling(steps=16), batch=batch)
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["model", 2]}}
    graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "p2p_demo"}}
    return graph


@pytest.mark.parametrize(
    "prompt",
    ["a red circle on a blue background", "a yellow square on a black background",
     "a striped green triangle next to a white diamond on a purple background"],
)
def test_stock_sampler_draws_the_prompted_scene(comfy, captured, prompt: str) -> None:
    outputs = comfy.run_graph(_graph(prompt, seed=3, batch=3))
    assert len(outputs["save"]["images"]) == 3  # the stock decoder and saver work on the pixel latents
    latent = captured["out"]
    assert latent.shape == (3, 3, 32, 32)
    images = ((latent + 1) / 2).clamp(0, 1)
    scene = _parse(prompt)
    right = [match(scene, detect(img))["all"] for img in images]
    assert sum(right) >= 2, f"{prompt!r}: {right}"


def _parse(prompt: str) -> Scene:
    """The Scene of a caption written in the generator's grammar."""
    body, _, background = prompt.partition(" on a ")
    objects = []
    for phrase in body.split(" next to "):
        words = phrase.split()[1:]
        texture = words[0] if len(words) == 3 else "plain"
        objects.append(SceneObject(words[-2], words[-1], texture))
    bg_words = background.split()
    return Scene(objects, bg_words[-2] if bg_words else None, bg_words[0] if len(bg_words) == 3 else "plain")


def test_attention_patches_hit_every_transformer_as_on_sd15(comfy) -> None:
    """attn1/attn2 replace patches keyed (block, id, index) reach the demo UNet's 7 transformer blocks."""
    from comfy import sample as comfy_sample

    loader = comfy.pack("nodes.demo_model")
    model, clip, _, _ = loader._load("unet")
    layers = [("input", 3), ("input", 5), ("middle", 0)] + [("output", i) for i in range(4)]
    seen: list[tuple] = []
    patched = model.clone()
    for block, number in layers:
        def spy(q, k, v, extra, kind="attn2"):
            seen.append((kind, *extra["block"], extra["n_heads"] * extra["dim_head"], k.shape[1]))
            return torch.nn.functional.scaled_dot_product_attention(
                *(t.view(t.shape[0], t.shape[1], extra["n_heads"], -1).transpose(1, 2) for t in (q, k, v))
            ).transpose(1, 2).reshape(q.shape)

        patched.set_model_attn2_replace(spy, block, number)
        patched.set_model_attn1_replace(lambda q, k, v, extra, s=spy: s(q, k, v, extra, "attn1"), block, number)
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a red circle"), return_pooled=True)
    latent = torch.zeros(1, 3, 32, 32)
    comfy_sample.sample(patched, torch.randn(1, 3, 32, 32), 1, 1.0, "euler", "simple",
                        [[cond, {"pooled_output": pooled}]], [[cond, {"pooled_output": pooled}]], latent,
                        disable_pbar=True)
    cross = {(b, i) for kind, b, i, _, n in seen if kind == "attn2" and n == 77}
    self_ = {(b, i) for kind, b, i, _, n in seen if kind == "attn1" and n in (64, 256)}
    assert cross == set(layers) and self_ == set(layers)


@pytest.mark.parametrize("architecture", DEMO_MODELS)
def test_training_resumes(comfy, tmp_path: Path, architecture: str) -> None:
    """Two runs of the training command continue one another; the DiT is trained as it was shipped, on the UNet
    demo's text encoder kept frozen (its `te.*` tensors stay those of the UNet's checkpoint)."""
    out, state = tmp_path / "demo.safetensors", tmp_path / "state.pt"
    cmd = [sys.executable, "-m", "demo.train", "--model", architecture, "--batch", "4", "--out", str(out),
           "--state", str(state)]
    if architecture == "dit":
        cmd += ["--frozen-text-encoder", str(checkpoint("unet"))]
    for steps in (1, 2):
        subprocess.run([*cmd, "--steps", str(steps)], cwd=REPO, check=True, capture_output=True, timeout=300)
    assert _info(out, architecture)["steps"] == 2
    assert state.exists()
    if architecture == "dit":
        assert _info(out, architecture)["frozen_text_encoder"] == checkpoint("unet").name
        trained, unet = load_file(str(out)), load_file(str(checkpoint("unet")))
        text_keys = [k for k in unet if k.startswith("te")]
        assert text_keys and all(torch.equal(trained[k], unet[k]) for k in text_keys)


def _info(path: Path, architecture: str = "unet") -> dict:
    """The training record in a demo checkpoint's metadata (the file format and architecture are checked too;
    the shipped UNet predates the `architecture` field)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "p2p-demo-1"
    assert json.loads(meta.get("architecture", '"unet"')) == architecture
    return json.loads(meta["info"])
