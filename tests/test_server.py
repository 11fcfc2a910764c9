"""The pack inside the real ComfyUI server (`main.py --cpu`), driven over HTTP as the frontend does."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from devtools import harness as comfy_harness
from devtools.comfy_host import comfy_host
from devtools.graphs import edit_graph
from devtools.server import ServerGraphError, unique_prefix


def saving(graph: dict) -> dict:
    """The graph with its latent capture replaced by VAEDecode -> SaveImage (the server's own outputs)."""
    graph = {name: node for name, node in graph.items() if node["class_type"] != "P2PTestCaptureLatent"}
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["model", 2]}}
    graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": unique_prefix()}}
    return graph


def txt2img(model_seed: int = 0, text: str = "a red cat riding a bicycle", seed: int = 1) -> dict:
    """The stock graph every ComfyUI user starts from, on the tiny SD1.5-like model."""
    return saving(
        {
            "model": {"class_type": "P2PTestTinyModel", "inputs": {"family": "sd15", "seed": model_seed}},
            "positive": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": text}},
            "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": ""}},
            "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
            "sample": {
                "class_type": "KSampler",
                "inputs": {
                    "model": ["model", 0],
                    "positive": ["positive", 0],
                    "negative": ["negative", 0],
                    "latent_image": ["latent", 0],
                    "seed": seed,
                    "steps": 4,
                    "cfg": 5.0,
                    "sampler_name": "euler",
                    "scheduler": "normal",
                    "denoise": 1.0,
                },
            },
        }
    )


def pixels(server, entry: dict) -> list[np.ndarray]:
    return [np.asarray(image) for image in server.images(entry)]


def cached_nodes(entry: dict) -> set[str]:
    return {
        node for event, data in entry["status"]["messages"] if event == "execution_cached" for node in data["nodes"]
    }


@pytest.fixture(scope="module")
def pack_nodes(comfy) -> list:
    """The pack's node classes, as the in-process host loaded them from the same folder."""
    package = str(comfy.pack_folder() / comfy.PACK_NAME).replace(".", "_x_")
    return list(sys.modules[f"{package}.nodes"].NODES)


def pack_log_lines(log: str, host: Path | None = None) -> list[str]:
    """The lines of a server log that name the pack: its name, its folder (the link in custom_nodes/) or its
    repository's path. The host's tree and the Python environment may lie inside the repository (a
    `COMFYUI_PATH` checkout in it, `.venv-0.8.0/ComfyUI`): their paths are taken out of a line first, so that
    the host's own messages (torchaudio missing for its audio nodes) are not read as the pack's."""
    foreign = sorted({str(host or comfy_host()), sys.prefix, str(comfy_harness.REPO / ".venv")}, key=len, reverse=True)
    own = (comfy_harness.PACK_NAME, str(comfy_harness.pack_folder() / comfy_harness.PACK_NAME), str(comfy_harness.REPO))
    lines = []
    for line in log.splitlines():
        stripped = line
        for path in foreign:
            stripped = stripped.replace(path, "<host>")
        if any(name in stripped for name in own):
            lines.append(line)
    return lines


def test_pack_loads_with_no_error_or_warning(comfy_server) -> None:
    log = comfy_server.log()
    pack = str(comfy_harness.pack_folder() / comfy_harness.PACK_NAME)
    import_lines = [line for line in log.splitlines() if re.search(r"seconds.*: " + re.escape(pack) + "$", line)]
    assert len(import_lines) == 1, f"the pack is not in the import-times list of the log:\n{log}"
    assert "IMPORT FAILED" not in import_lines[0]
    mentions = [line for line in pack_log_lines(log) if line not in import_lines]
    allowed = re.compile(r"^(Adding extra search path |Automatically register web folder )")
    unexpected = [line for line in mentions if not allowed.match(line) and "p2p_test_fixtures" not in line]
    assert not unexpected, "the server log mentions the pack outside its import line:\n" + "\n".join(unexpected)
    assert not any(re.search(r"Cannot import|IMPORT FAILED|Traceback", line) for line in mentions)


def test_the_pack_log_lines_leave_out_the_host_and_the_environment() -> None:
    """A host checkout inside the repository: its own import failures are not the pack's, the pack's are."""
    host = comfy_harness.REPO / "ComfyUI"
    host_failure = f"Cannot import {host}/comfy_extras/nodes_audio.py module for custom nodes"
    venv_frame = f'  File "{sys.prefix}/lib/python3.11/site-packages/torch/__init__.py", line 1'
    pack_failure = f"Cannot import {comfy_harness.pack_folder() / comfy_harness.PACK_NAME} module for custom nodes"
    pack_frame = f'  File "{comfy_harness.REPO}/nodes/patching.py", line 1, in <module>'
    log = "\n".join([host_failure, venv_frame, pack_failure, pack_frame])
    assert pack_log_lines(log, host) == [pack_failure, pack_frame]


def test_object_info_lists_every_node_with_tooltips(comfy_server, pack_nodes) -> None:
    info = comfy_server.get("/object_info").json()
    assert pack_nodes, "the pack registers no node"
    for node in pack_nodes:
        schema = node.GET_SCHEMA()
        assert schema.node_id in info, f"{schema.node_id} is missing from /object_info"
        entry = info[schema.node_id]
        assert entry["python_module"] == f"custom_nodes.{comfy_harness.PACK_NAME}"
        assert entry["category"].split("/")[0] == "Prompt-to-Prompt"
        assert entry["description"], f"{schema.node_id} has no description"
        listed = {**entry["input"].get("required", {}), **entry["input"].get("optional", {})}
        assert set(listed) == {i.id for i in schema.inputs}, schema.node_id
        for name, spec in listed.items():
            options = spec[1] if len(spec) > 1 else {}
            assert len(options.get("tooltip", "").split()) >= 3, f"{schema.node_id}.{name} has no useful tooltip"


def test_stock_txt2img_runs_beside_the_pack(comfy_server) -> None:
    entry = comfy_server.run(txt2img())
    [image] = pixels(comfy_server, entry)
    assert image.shape == (64, 64, 3)
    assert image.std() > 1.0, "the stock graph gave a flat image"


def test_p2p_graph_runs(comfy_server) -> None:
    entry = comfy_server.run(saving(edit_graph()))
    source, target = pixels(comfy_server, entry)
    assert source.shape == target.shape == (64, 64, 3)
    assert not np.array_equal(source, target), "the word swap left the target identical to the source"


def test_bad_word_fails_that_prompt_only(comfy_server) -> None:
    bad = saving(edit_graph(chain=[("Reweight", {"weights": "zebra=2.0", "cross_replace": 0.8, "self_replace": 0.4})]))
    with pytest.raises(ServerGraphError) as failure:
        comfy_server.run(bad)
    assert "zebra" in failure.value.message
    assert "Traceback" not in failure.value.message
    assert comfy_server.get("/system_stats").ok
    good = edit_graph(chain=[("Reweight", {"weights": "red=2.0", "cross_replace": 0.8, "self_replace": 0.4})])
    assert len(pixels(comfy_server, comfy_server.run(saving(good)))) == 2


def test_graphs_queued_together_do_not_affect_each_other(comfy_server) -> None:
    """A plain graph, a word swap and a refine + re-weight share one cached model; each gives the same
    images whether it runs after the others or not, and the plain one is unchanged by the edits."""
    model_seed = 5  # a model no other test samples with: its first run is the plain graph
    plain = txt2img(model_seed)
    swap = saving(
        edit_graph(loader={"class_type": "P2PTestTinyModel", "inputs": {"family": "sd15", "seed": model_seed}})
    )
    refine = saving(
        edit_graph(
            source="a cat riding a bicycle",
            target="a fluffy cat riding a bicycle",
            edit="AttentionRefine",
            chain=[("Reweight", {"weights": "fluffy=3", "cross_replace": 0.8, "self_replace": 0.4})],
            loader={"class_type": "P2PTestTinyModel", "inputs": {"family": "sd15", "seed": model_seed}},
            seed=7,
        )
    )
    first = {
        name: pixels(comfy_server, comfy_server.run(g))
        for name, g in [("plain", plain), ("swap", swap), ("refine", refine)]
    }
    # Queued back to back, in another order: the refine now follows the plain graph, the swap follows the refine.
    order = [("plain", plain), ("refine", refine), ("swap", swap)]
    ids = [(name, comfy_server.queue(g)) for name, g in order]
    for name, prompt_id in ids:
        entry = comfy_server.check(comfy_server.wait(prompt_id))
        assert "sample" not in cached_nodes(entry), f"{name} came from the cache: the comparison would prove nothing"
        again = pixels(comfy_server, entry)
        assert len(again) == len(first[name])
        for a, b in zip(first[name], again, strict=True):
            assert np.array_equal(a, b), f"{name} changed when run after the other graphs"


def align(comfy_server, **body):
    response = comfy_server.post("/api/p2p/align", json=body)
    return response.status_code, response.json()


def test_word_inputs_route_lists_each_nodes_word_inputs(comfy_server) -> None:
    """The editor's list of inputs to check comes from the server (web/p2p.js has no copy)."""
    response = comfy_server.get("/api/p2p/word_inputs")
    assert response.status_code == 200
    listed = response.json()
    assert listed["LocalBlend"] == ["source_words", "target_words"]
    assert listed["Reweight"] == ["weights"] and listed["AttentionMaskExtract"] == ["words"]
    assert "source_words" not in (comfy_harness.REPO / "web" / "p2p.js").read_text()


def test_align_route_shows_a_word_swap(comfy_server) -> None:
    status, answer = align(
        comfy_server, source="a cat riding a bicycle", target="a cat riding a sports car", edit="replace"
    )
    assert status == 200
    [target] = answer["targets"]
    assert target["error"] is None
    statuses = [(w["word"], w["status"], w["from"]) for w in target["words"]]
    assert statuses == [
        ("a", "kept", ["a"]),
        ("cat", "kept", ["cat"]),
        ("riding", "kept", ["riding"]),
        ("a", "kept", ["a"]),
        ("sports", "swapped", ["bicycle"]),
        ("car", "swapped", ["bicycle"]),
    ]


def test_align_route_shows_a_refinement_per_target(comfy_server) -> None:
    status, answer = align(
        comfy_server,
        source="a castle next to a river",
        target="children drawing of a castle next to a river\na castle next to a rainbow",
        edit="refine",
    )
    assert status == 200
    first, second = answer["targets"]
    assert [w["word"] for w in first["words"] if w["status"] == "added"] == ["children", "drawing", "of"]
    assert first["removed"] == []
    assert [w["word"] for w in second["words"] if w["status"] == "added"] == ["rainbow"]
    assert second["removed"] == ["river"]


def test_align_route_explains_a_swap_that_adds_words(comfy_server) -> None:
    _, answer = align(comfy_server, source="a castle", target="a big castle", edit="replace")
    assert "big" in answer["targets"][0]["error"] and "AttentionRefine" in answer["targets"][0]["error"]


def test_align_route_flags_words_not_in_the_prompts(comfy_server) -> None:
    checks = [
        {"field": "weights", "text": "zebra=2, car=2", "node": "5"},
        {"field": "source_words", "text": "bicycle, car", "node": "6"},
        {"field": "words", "text": "cat, moon", "node": 7},
        {"field": "word_schedule", "text": "car", "node": "8"},
    ]
    status, answer = align(
        comfy_server, source="a cat riding a bicycle", target="a cat riding a car", edit="replace", checks=checks
    )
    assert status == 200
    found = [(p["node"], p["field"], p["word"]) for p in answer["problems"]]
    assert found == [
        ("5", "weights", "zebra"),
        ("6", "source_words", "car"),
        (7, "words", "moon"),
        ("8", "word_schedule", None),
    ]
    assert "zebra" in answer["problems"][0]["message"] and "a cat riding a car" in answer["problems"][0]["message"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ([1, 2], "JSON object"),
        ({"target": "a dog"}, "'source' must be a string"),
        ({"source": "a cat", "target": "a dog", "edit": "swap"}, "'edit' must be one of"),
        ({"source": "  ", "target": "a dog"}, "source prompt is empty"),
        ({"source": "a cat " * 400, "target": "a dog"}, "longer than"),
        ({"source": "a cat", "target": "a dog\n" * 17}, "more than 16 target lines"),
        ({"source": "a cat", "target": "a dog", "checks": [{"field": "path", "text": "/etc/passwd"}]}, "check field"),
        ({"source": "a cat", "target": "a dog", "pad": "x" * 40_000}, "larger than"),
    ],
)
def test_align_route_refuses_bad_requests(comfy_server, body, reason: str) -> None:
    data = body if isinstance(body, str) else json.dumps(body)
    response = comfy_server.post("/p2p/align", data=data)
    assert response.status_code == 400
    assert reason in response.json()["error"]
