"""Run the shipped workflows (workflows/*.json, as a user drags them in) in a real ComfyUI on the
CPU and write what they show to out/: one PNG per workflow, a labelled row for each Save Image and Preview
Image node (source and edits side by side, heat maps, masks).

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


MODEL_FILES = {"ckpt_name": "checkpoints", "unet_name": "diffusion_models", "clip_name1": "text_encoders",
               "clip_name2": "text_encoders", "vae_name": "vae"}
"""The loaders' file inputs, and the models/ folder each picks its file from."""


def missing_model_files(prompt: dict) -> list[str]:
    """The model files the graph's loaders name that this ComfyUI does not have (folder/name)."""
    import folder_paths

    return [
        f"{folder}/{node['inputs'][name]}"
        for node in prompt.values()
        for name, folder in MODEL_FILES.items()
        if name in node["inputs"] and node["inputs"][name] not in folder_paths.get_filename_list(folder)
    ]


ROW_HEIGHT = 256
"""Pixels of each row of a contact sheet at least: the demo's 32 px images are scaled up (nearest)."""


def node_titles(workflow: dict) -> dict[str, str]:
    """Each node's title as the canvas shows it (its own title, else its type), by node id."""
    return {str(node["id"]): node.get("title") or node["type"] for node in workflow["nodes"]}


def shown_images(outputs: dict, titles: dict[str, str]) -> list[tuple[str, list]]:
    """Every image the workflow shows, saved (Save Image) and previewed (Preview Image: heat maps, masks),
    as (caption, images) per node in the graph's order."""
    import folder_paths
    from PIL import Image

    folders = {"output": folder_paths.get_output_directory(), "temp": folder_paths.get_temp_directory()}
    shown = []
    order = {node_id: i for i, node_id in enumerate(titles)}
    for node_id in sorted(outputs, key=lambda n: order.get(n, len(order))):
        items = [item for item in outputs[node_id].get("images", []) if item.get("type") in folders]
        if not items:
            continue
        kind = "saved" if items[0]["type"] == "output" else "preview"
        images = [
            Image.open(Path(folders[item["type"]]) / item.get("subfolder", "") / item["filename"]).convert("RGB")
            for item in items
        ]
        shown.append((f"{titles.get(node_id, node_id)} ({kind})", images))
    return shown


def contact_sheet(shown: list[tuple[str, list]], target: Path) -> Path | None:
    """One row per node that shows images, its caption above it, images scaled to ROW_HEIGHT at least."""
    from PIL import Image, ImageDraw, ImageFont

    if not shown:
        return None
    font = ImageFont.load_default(size=20)
    gap, caption = 8, 30
    rows = []
    for text, images in shown:
        scale = max(1, ROW_HEIGHT // max(image.height for image in images))
        images = [image.resize((image.width * scale, image.height * scale), Image.NEAREST) for image in images]
        row = Image.new(
            "RGB",
            (sum(i.width for i in images) + gap * (len(images) - 1), caption + max(i.height for i in images)),
            "white",
        )
        ImageDraw.Draw(row).text((4, 4), text, fill="black", font=font)
        x = 0
        for image in images:
            row.paste(image, (x, caption))
            x += image.width + gap
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * len(rows)), "white")
    y = 0
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + gap
    sheet.save(target)
    return target


def main(names: list[str], out: Path = REPO / "out") -> int:
    """Run the workflows named (all when none) and write their contact sheets to `out`; 1 if one failed."""
    harness.boot(fixture_nodes=False)
    import folder_paths

    for picture in (REPO / "demo" / "images").glob("*.png"):
        shutil.copy(picture, folder_paths.get_input_directory())
    out.mkdir(exist_ok=True)
    failed = 0
    for path in sorted((REPO / "workflows").glob("*.json")):
        if names and path.stem not in names:
            continue
        workflow = json.loads(path.read_text())
        prompt = to_api(workflow)
        missing = missing_model_files(prompt)
        if missing:
            print(f"{path.stem}: skipped, needs {', '.join(missing)} (under ComfyUI's models/)")
            continue
        start = time.perf_counter()
        try:
            outputs = harness.run_graph(prompt)
        except harness.GraphError as error:
            print(f"{path.stem}: FAILED: {error.message}")
            failed += 1
            continue
        written = contact_sheet(shown_images(outputs, node_titles(workflow)), out / f"{path.stem}.png")
        where = written if written else "no image"
        print(f"{path.stem}: {time.perf_counter() - start:.1f} s -> {where}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
