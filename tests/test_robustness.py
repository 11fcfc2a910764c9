"""Interrupts, ComfyUI's cache and low precision: the edit in the conditions a real session has."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch

from devtools import harness as comfy_harness
from devtools.graphs import add_mask_extract, edit_graph

comfy_harness.boot()
import comfy.model_management  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.sample  # noqa: E402

import nodes  # noqa: E402

SOURCE = "a red cat riding a bicycle"
TARGET = "a red cat riding a car"
WINDOW = {"cross_replace": 0.8, "self_replace": 0.4}


def pack_edit(model, clip, edit: str = "AttentionReplace"):
    """(conditioning, prompts, model patched by the pack's node) for SOURCE -> TARGET, as the graph builds them."""
    pair = comfy_harness.pack("nodes.prompt_pair").PromptPair.execute(clip, SOURCE, TARGET)
    conditioning, prompts = pair.args
    node = getattr(comfy_harness.pack("nodes.edit_nodes"), edit)
    return conditioning, prompts, node.execute(model, prompts, **WINDOW).args[0]


def sample(model, positive, negative, steps: int = 4, sampler: str = "dpmpp_2m_sde", callback=None) -> torch.Tensor:
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 1)
    return comfy.sample.sample(
        model, noise, steps, 5.0, sampler, "normal", positive, negative, latent, callback=callback, disable_pbar=True
    )


@pytest.mark.parametrize("sampler", ["euler", "dpmpp_2m_sde"])
def test_an_interrupted_edit_leaves_the_model_unpatched_and_the_next_run_exact(sampler):
    """ComfyUI's interrupt (the flag `POST /interrupt` sets) raised from inside the UNet mid-run: the
    stock comfy.ops layers check it at every op."""
    model, clip, _ = comfy_harness.tiny_model("sd15")
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    plain_positive = nodes.CLIPTextEncode().encode(clip, TARGET)[0]
    options_before = copy.deepcopy(model.model_options)
    plain_before = sample(model, plain_positive, negative, sampler=sampler)
    conditioning, _, edited = pack_edit(model, clip)
    edit_before = sample(edited, conditioning, negative, sampler=sampler)

    steps_seen = []

    def interrupt_at_step_two(step, denoised, x, total_steps):
        steps_seen.append(step)
        if step == 1:
            comfy.model_management.interrupt_current_processing()

    with pytest.raises(comfy.model_management.InterruptProcessingException):
        sample(edited, conditioning, negative, sampler=sampler, callback=interrupt_at_step_two)
    assert steps_seen == [0, 1], "the interrupt did not stop the run mid-way"
    assert not comfy.model_management.processing_interrupted()
    # The loaded model carries nothing of the edit: no state, no patch, no wrapper.
    assert model.model_options == options_before
    assert not model.model_options["transformer_options"].get("patches_replace")
    assert all(not wrappers for wrappers in model.wrappers.values())
    assert torch.equal(sample(model, plain_positive, negative, sampler=sampler), plain_before)
    assert torch.equal(sample(edited, conditioning, negative, sampler=sampler), edit_before)


def cache_graph() -> dict:
    """Every P2P node with string and number inputs, on one sampler, with the final mask extracted."""
    graph = edit_graph(
        source=SOURCE,
        target=TARGET,
        steps=2,
        edit_inputs={"word_schedule": "car=0.6", "cross_start": 0.0, "self_start": 0.0},
        chain=[
            ("Reweight", {"weights": "red=2", **WINDOW}),
            ("LocalBlend", {"source_words": "bicycle", "target_words": "car", "threshold": 0.85, "blend_start": 0.2}),
        ],
        loader={"class_type": "P2PTestTinyModel", "inputs": {"family": "sd15", "seed": 11}},
    )
    return add_mask_extract(graph, ["chain1", 0], "cat, car", 0.8)


def descendants(graph: dict, node: str) -> set[str]:
    """`node` and every node that reads its outputs, directly or not."""
    found = {node}
    grew = True
    while grew:
        readers = {
            name
            for name, entry in graph.items()
            if any(isinstance(v, list) and v[0] in found for v in entry["inputs"].values())
        }
        grew = not readers <= found
        found |= readers
    return found


def executed_nodes(graph: dict) -> set[str]:
    """The nodes the executor kept across runs (as the server's) ran for `graph`, from its messages."""
    messages = comfy_harness.caching_executor().server.messages
    messages.clear()
    comfy_harness.run_graph(graph, keep_outputs=True)
    return {
        node
        for event, data in messages
        if event == "progress_state"
        for node, state in data["nodes"].items()
        if state["state"] == "running"
    }


CHANGES = [
    ("pair", "source", "a red cat riding a tricycle"),
    ("pair", "target", "a red dog riding a car"),
    ("edit", "cross_replace", 0.6),
    ("edit", "self_replace", 0.2),
    ("edit", "word_schedule", "car=0.3"),
    ("edit", "cross_start", 0.1),
    ("edit", "self_start", 0.1),
    ("edit", "self_layers", "all layers"),
    ("chain0", "weights", "red=3"),
    ("chain1", "source_words", "cat"),
    ("chain1", "threshold", 0.7),
    ("chain1", "blend_start", 0.5),
    ("extract", "words", "cat"),
    ("extract", "threshold", 0.5),
]


def test_changing_a_p2p_input_reruns_what_depends_on_it_and_nothing_else(captured):
    graph = cache_graph()
    executed_nodes(graph)
    assert executed_nodes(graph) == set()  # the same graph again: everything from the cache
    for node, name, value in CHANGES:
        changed = copy.deepcopy(graph)
        changed[node]["inputs"][name] = value
        if (node, name) == ("pair", "source"):
            changed["chain1"]["inputs"]["source_words"] = "tricycle"
        expected = descendants(graph, node)
        assert executed_nodes(changed) == expected, f"changing {node}.{name}"
        assert executed_nodes(graph) == expected, f"changing {node}.{name} back"


def low_precision(model, dtype: torch.dtype):
    """The same tiny UNet with its weights and compute in `dtype` (as a checkpoint loaded in it runs)."""
    config = model.model.model_config  # shared, not copied: ComfyUI 0.8.0's model configs cannot be deep-copied
    base = copy.deepcopy(model.model, memo={id(config): config}).to(dtype)
    base.diffusion_model.dtype = dtype
    return comfy.model_patcher.ModelPatcher(base, load_device=torch.device("cpu"), offload_device=torch.device("cpu"))


def cpu_runs(dtype: torch.dtype) -> bool:
    """Whether this CPU's torch runs the matrix products and attention of `dtype` at all."""
    try:
        q = torch.ones(1, 1, 4, 8, dtype=dtype)
        torch.nn.functional.scaled_dot_product_attention(q, q, q)
        torch.nn.functional.conv2d(torch.ones(1, 2, 4, 4, dtype=dtype), torch.ones(2, 2, 3, 3, dtype=dtype))
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("sampler", ["dpmpp_2m", "euler_ancestral"])
def test_the_edit_in_low_precision(dtype, sampler):
    """No NaN, and the fused edit is as close to its reference as the dtype itself brings a plain run
    to fp32: TOLERANCE = max |plain in dtype - plain in fp32| of the target prompt."""
    if not cpu_runs(dtype):
        pytest.skip(f"this CPU's torch has no {dtype} kernels (a host limit, not the pack's)")
    model, clip, _ = comfy_harness.tiny_model("sd15")
    low = low_precision(model, dtype)
    negative = nodes.CLIPTextEncode().encode(clip, "")[0]
    plain_positive = nodes.CLIPTextEncode().encode(clip, TARGET)[0]
    plain_low = sample(low, plain_positive, negative, sampler=sampler)
    plain_full = sample(model, plain_positive, negative, sampler=sampler)
    assert torch.isfinite(plain_low).all()
    tolerance = (plain_low - plain_full).abs().max()
    assert tolerance > 0, f"the run did not compute in {dtype}"
    conditioning, _, edited = pack_edit(low, clip)
    fused = sample(edited, conditioning, negative, sampler=sampler)
    reference_model = comfy_harness.pack("host.edit").with_reference_attention(edited)
    reference = sample(reference_model, conditioning, negative, sampler=sampler)
    assert torch.isfinite(fused).all() and torch.isfinite(reference).all()
    assert (fused - reference).abs().max() <= tolerance


def saved(graph: dict, prefix: str) -> dict:
    """The graph with its latent capture replaced by VAEDecode -> SaveImage."""
    graph = {name: node for name, node in graph.items() if node["class_type"] != "P2PTestCaptureLatent"}
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["model", 2]}}
    graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}}
    return graph


def sampled_images(server, graph: dict) -> list:
    """The images of a graph run on the server; its sampler must have run (not come from the cache)."""
    entry = server.run(graph)
    cached = {n for event, data in entry["status"]["messages"] if event == "execution_cached" for n in data["nodes"]}
    assert "sample" not in cached, "the sampler came from the cache: the comparison would prove nothing"
    return [np.asarray(image) for image in server.images(entry)]


def test_the_servers_interrupt_mid_edit(comfy_server):
    """POST /interrupt while the edit samples: the prompt ends as interrupted, and a plain graph and
    the edit then give the images they gave before the interrupt."""
    loader = {"class_type": "P2PTestTinyModel", "inputs": {"family": "sd15", "seed": 12}}
    edit = saved(edit_graph(loader=loader, sampler="dpmpp_2m_sde", steps=3), "p2p-interrupt-edit")
    plain = saved(edit_graph(loader=loader, edit=None, batch=2, steps=3), "p2p-interrupt-plain")
    before = {"edit": sampled_images(comfy_server, edit), "plain": sampled_images(comfy_server, plain)}
    long = saved(edit_graph(loader=loader, sampler="dpmpp_2m_sde", steps=5000), "p2p-interrupt-long")
    prompt_id = comfy_server.queue(long)
    deadline = time.monotonic() + 120
    while not comfy_server.get("/queue").json()["queue_running"]:
        assert time.monotonic() < deadline, "the long edit never started"
        time.sleep(0.05)
    time.sleep(2.0)  # the other nodes are cached: the sampler is running
    assert comfy_server.post("/interrupt").ok
    entry = comfy_server.wait(prompt_id, timeout=120)
    interrupted = [data for event, data in entry["status"]["messages"] if event == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_id"] == "sample", entry["status"]
    for name, graph in (("plain", plain), ("edit", edit)):
        again = sampled_images(comfy_server, graph)
        assert all(np.array_equal(a, b) for a, b in zip(before[name], again, strict=True)), name
