"""Run the shipped workflows (workflows/*.json, as a user drags them in) in a real ComfyUI on the
CPU and write what they make to out/: one PNG per workflow, source and edits side by side.

Workflows made for a checkpoint this machine does not have (SD1.5, SDXL) are skipped with a note;
the others run on the pack's built-in demo model. The pictures the demo workflows load (demo/images/)
are copied into ComfyUI's input folder first, where Load Image finds them.

    .venv/bin/python -m scripts.run_workflows [NAME ...]      (from the repo root; scripts/demo.sh)

The host is devtools.harness, booted without the test fixture nodes.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from devtools import harness
from devtools.comfy_host import REPO

CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
NOT_RUN = {"Note", "MarkdownNote"}


def input_order(class_type: str) -> dict[str, dict]:
    """The node's inputs (required, then optional) with their options, as the frontend lays widgets out."""
    import nodes

    spec = nodes.NODE_CLASS_MAPPINGS[class_type].INPUT_TYPES()
    order: dict[str, dict] = {}
    for group in ("required", "optional"):
        for name, value in spec.get(group, {}).items():
            order[name] = value[1] if len(value) > 1 and isinstance(value[1], dict) else {}
    return order


def to_api(workflow: dict) -> dict:
    """The UI-format workflow (nodes, links, widgets_values) as an API-format prompt."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] in NOT_RUN or node.get("mode", 0) in (2, 4):
            continue
        options = input_order(node["type"])
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for slot in node.get("inputs", []):
            name = slot["name"]
            if "widget" in slot and values:
                inputs[name] = values.pop(0)
                if (options.get(name, {}).get("control_after_generate") or name in ("seed", "noise_seed")) and (
                    values and values[0] in CONTROL_VALUES
                ):
                    values.pop(0)
            if slot.get("link") is not None:
                _, origin, origin_slot, *_ = links[slot["link"]]
                inputs[name] = [str(origin), origin_slot]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def missing_checkpoints(prompt: dict) -> list[str]:
    import folder_paths

    have = set(folder_paths.get_filename_list("checkpoints"))
    return [
        node["inputs"]["ckpt_name"]
        for node in prompt.values()
        if node["class_type"] == "CheckpointLoaderSimple" and node["inputs"].get("ckpt_name") not in have
    ]


def side_by_side(outputs: dict, target: Path) -> Path | None:
    """The workflow's saved images in one row, scaled up (nearest) to at least 256 px high."""
    import folder_paths
    from PIL import Image

    images = [
        Image.open(Path(folder_paths.get_output_directory()) / item.get("subfolder", "") / item["filename"])
        for ui in outputs.values()
        for item in ui.get("images", [])
        if item.get("type") == "output"
    ]
    if not images:
        return None
    scale = max(1, 256 // max(image.height for image in images))
    images = [
        image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST) for image in images
    ]
    row = Image.new(
        "RGB", (sum(i.width for i in images) + 8 * (len(images) - 1), max(i.height for i in images)), "white"
    )
    x = 0
    for image in images:
        row.paste(image, (x, 0))
        x += image.width + 8
    row.save(target)
    return target


def main(names: list[str]) -> int:
    harness.boot(fixture_nodes=False)
    import folder_paths

    for picture in (REPO / "demo" / "images").glob("*.png"):
        shutil.copy(picture, folder_paths.get_input_directory())
    out = REPO / "out"
    out.mkdir(exist_ok=True)
    failed = 0
    for path in sorted((REPO / "workflows").glob("*.json")):
        if names and path.stem not in names:
            continue
        prompt = to_api(json.loads(path.read_text()))
        missing = missing_checkpoints(prompt)
        if missing:
            print(f"{path.stem}: skipped, needs the checkpoint {', '.join(missing)} (put it in models/checkpoints)")
            continue
        start = time.perf_counter()
        try:
            outputs = harness.run_graph(prompt)
        except harness.GraphError as error:
            print(f"{path.stem}: FAILED: {error.message}")
            failed += 1
            continue
        written = side_by_side(outputs, out / f"{path.stem}.png")
        where = written.relative_to(REPO) if written else "no image"
        print(f"{path.stem}: {time.perf_counter() - start:.1f} s -> {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
