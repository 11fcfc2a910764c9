"""Every shipped workflow (`workflows/*.json`, the frontend's UI format) against `/object_info` of the real server.

A node or input renamed in the pack, a widget added or reordered, a value out of range or a link
between mismatched types breaks the drag-and-drop file without an error in Python: these tests
catch it. The browser tests (test_browser.py) then run each workflow for real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devtools import harness as comfy_harness

WORKFLOWS = sorted((comfy_harness.REPO / "workflows").glob("*.json"))
FRONTEND_ONLY = {"MarkdownNote", "Note", "Reroute", "PrimitiveNode"}
"""Nodes that live in the frontend only and never reach the server."""
USER_FILES = {"ckpt_name", "unet_name", "clip_name1", "clip_name2", "vae_name", "image"}
"""Combo inputs listing the user's own files: the shipped name is a suggestion, not on the test server."""
CONTROL_MODES = {"fixed", "increment", "decrement", "randomize"}


@pytest.fixture(scope="module")
def object_info(comfy_server) -> dict:
    return comfy_server.get("/object_info").json()


def test_the_shipped_workflows_are_there() -> None:
    names = {p.stem for p in WORKFLOWS}
    capabilities = ("word_swap", "refine", "reweight", "local_blend", "attention_maps", "real_image")
    capabilities += ("sdxl", "flux", "sd35")
    for capability in capabilities:
        assert any(capability in name for name in names), f"no workflow for {capability}: {sorted(names)}"


def spec_of(info: dict, name: str) -> list | None:
    inputs = info["input"]
    return inputs.get("required", {}).get(name) or inputs.get("optional", {}).get(name)


def check_value(where: str, name: str, spec: list, value) -> None:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list) or kind == "COMBO":
        choices = kind if isinstance(kind, list) else options.get("options", [])
        assert name in USER_FILES or value in choices, f"{where}: {value!r} is not one of {choices}"
    elif kind in ("INT", "FLOAT"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: {value!r} is not a number"
        assert options.get("min", value) <= value <= options.get("max", value), f"{where}: {value} out of range"
    elif kind == "STRING":
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
    elif kind == "BOOLEAN":
        assert isinstance(value, bool), f"{where}: {value!r} is not a boolean"


def check_widgets(node: dict, info: dict) -> None:
    names = [i["name"] for i in node.get("inputs", []) if "widget" in i]
    values = list(node.get("widgets_values") or [])
    for name in names:
        where = f"node {node['id']} {node['type']}.{name}"
        if name == "upload":  # the image upload button the frontend adds to LoadImage
            assert spec_of(info, "image")[1].get("image_upload"), where
            assert values.pop(0) == "image", where
            continue
        spec = spec_of(info, name)
        assert spec is not None, f"{where}: no such input on the server"
        assert values, f"{where}: no value saved"
        check_value(where, name, spec, values.pop(0))
        if len(spec) > 1 and spec[1].get("control_after_generate"):
            assert values and values.pop(0) in CONTROL_MODES, f"{where}: no control_after_generate mode"
    assert not values, f"node {node['id']} {node['type']}: {len(values)} widget values too many: {values}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_matches_the_server(object_info: dict, path: Path) -> None:
    workflow = json.loads(path.read_text())
    nodes = {node["id"]: node for node in workflow["nodes"]}
    assert any(n["type"] in ("PromptPair",) for n in nodes.values()), f"{path.name} uses no PromptPair"
    for node in nodes.values():
        if node["type"] in FRONTEND_ONLY:
            continue
        assert node["type"] in object_info, f"{path.name}: unknown node {node['type']}"
        info = object_info[node["type"]]
        declared = {**info["input"].get("required", {}), **info["input"].get("optional", {})}
        for slot in node.get("inputs", []):
            assert slot["name"] in declared or slot["name"] == "upload", f"{path.name}: {node['type']}.{slot['name']}"
        outputs = [o["type"] for o in node.get("outputs", [])]
        assert outputs == list(info["output"]), f"{path.name}: outputs of {node['type']} {outputs}"
        check_widgets(node, info)
    for link_id, origin, origin_slot, target, target_slot, kind in workflow["links"]:
        source, sink = nodes[origin], nodes[target]
        assert source["outputs"][origin_slot]["type"] == kind, f"{path.name}: link {link_id}"
        slot = sink["inputs"][target_slot]
        assert slot["link"] == link_id and slot["type"] in (kind, "*"), f"{path.name}: link {link_id} into {slot}"
        if sink["type"] not in FRONTEND_ONLY:
            declared = spec_of(object_info[sink["type"]], slot["name"])[0]
            assert declared in (kind, "*") or kind in str(declared).split(","), f"{path.name}: link {link_id}"
    notes = [n for n in nodes.values() if n["type"] in ("MarkdownNote", "Note")]
    assert notes and any("checkpoint" in n["widgets_values"][0].lower() for n in notes), (
        f"{path.name} has no note saying which checkpoint to pick"
    )


def test_workflows_are_listed_as_the_packs_templates(comfy_server) -> None:
    """ComfyUI lists a pack's `workflows/` folder in the frontend's Templates menu and serves its files."""
    listed = comfy_server.get("/workflow_templates").json()
    assert sorted(listed.get(comfy_harness.PACK_NAME, [])) == [p.stem for p in WORKFLOWS]
    for path in WORKFLOWS:
        served = comfy_server.get(f"/api/workflow_templates/{comfy_harness.PACK_NAME}/{path.name}")
        assert served.ok and served.json() == json.loads(path.read_text()), path.name
