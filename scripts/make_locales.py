"""Write the pack's English locale from the node schemas of a running ComfyUI, and list what the others lack.

ComfyUI's server reads `locales/<lang>/main.json` and `locales/<lang>/nodeDefs.json` of every custom node
(`app/custom_node_manager.py`, served at `GET /i18n`); the frontend looks a node's texts up under
`nodeDefs.<node id>`: `display_name`, `description`, `inputs.<input name>.name` / `.tooltip` and
`outputs.<output index>.name` / `.tooltip`. The English file is the schemas' own text, so it is
generated here and never edited by hand (`tests/test_locales.py` fails when it drifts); the other
languages are translated by hand, key for key.

Start ComfyUI with the pack installed, then, from the repository root:

    .venv/bin/python -m scripts.make_locales --server http://127.0.0.1:8188
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCALES = REPO / "locales"
PACK_NAME = "comfyui-prompt-to-prompt"


def pack_nodes(object_info: dict[str, dict], pack: str = PACK_NAME) -> dict[str, dict]:
    """The entries of `GET /object_info` that the pack installed as `custom_nodes/<pack>` registered."""
    return {name: info for name, info in object_info.items() if info.get("python_module") == f"custom_nodes.{pack}"}


def node_locale(info: dict) -> dict:
    """One node's `nodeDefs` entry in the frontend's layout, from its `/object_info` entry (the schema's text)."""
    entry: dict = {"display_name": info["display_name"]}
    if info.get("description"):
        entry["description"] = info["description"]
    inputs = {}
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            options = spec[1] if len(spec) > 1 else {}
            inputs[name] = {"name": name}
            if options.get("tooltip"):
                inputs[name]["tooltip"] = options["tooltip"]
    if inputs:
        entry["inputs"] = inputs
    tooltips = info.get("output_tooltips") or []
    outputs = {}
    for index, name in enumerate(info["output_name"]):
        outputs[str(index)] = {"name": name}
        if index < len(tooltips) and tooltips[index]:
            outputs[str(index)]["tooltip"] = tooltips[index]
    if outputs:
        entry["outputs"] = outputs
    return entry


def english_node_defs(object_info: dict[str, dict], pack: str = PACK_NAME) -> dict[str, dict]:
    """`locales/en/nodeDefs.json` as the schemas say it, nodes in registration order."""
    return {name: node_locale(info) for name, info in pack_nodes(object_info, pack).items()}


def locale_keys(node_defs: dict[str, dict]) -> set[str]:
    """Every text a locale must have, as dotted keys (`PromptPair.inputs.source.tooltip`)."""
    keys = set()

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else key, item)
        else:
            keys.add(prefix)

    walk("", node_defs)
    return keys


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="a running ComfyUI with the pack")
    parser.add_argument("--pack", default=PACK_NAME, help="the pack's folder name under custom_nodes")
    args = parser.parse_args()
    with urllib.request.urlopen(f"{args.server.rstrip('/')}/object_info", timeout=60) as response:
        object_info = json.load(response)
    english = english_node_defs(object_info, args.pack)
    if not english:
        raise SystemExit(f"{args.server} has no node from custom_nodes/{args.pack}")
    write_json(LOCALES / "en" / "nodeDefs.json", english)
    print(f"locales/en/nodeDefs.json: {len(english)} nodes")
    wanted = locale_keys(english)
    for path in sorted(LOCALES.glob("*/nodeDefs.json")):
        have = locale_keys(json.loads(path.read_text(encoding="utf-8")))
        for key in sorted(wanted - have):
            print(f"{path.relative_to(REPO)}: missing {key}")
        for key in sorted(have - wanted):
            print(f"{path.relative_to(REPO)}: no longer in the schemas: {key}")


if __name__ == "__main__":
    main()
