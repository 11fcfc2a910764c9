"""The pack's translations (`locales/<lang>/`), checked against the node schemas of the real server.

Every node, input and output the pack registers (read from `GET /object_info`) must have its display
name, description, names and tooltips in every locale; the English locale must be the schemas' own
text (`python -m scripts.make_locales` writes it); and the server must serve the files through
`GET /i18n`, where the frontend reads them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devtools import harness as comfy_harness
from scripts.make_locales import english_node_defs, locale_keys, pack_nodes

LOCALES = comfy_harness.REPO / "locales"
LANGUAGES = sorted(path.name for path in LOCALES.iterdir() if path.is_dir())
HAN = re.compile(r"[\u4e00-\u9fff]")


def read(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def object_info(comfy_server) -> dict[str, dict]:
    response = comfy_server.get("/object_info")
    response.raise_for_status()
    info = response.json()
    assert pack_nodes(info, comfy_harness.PACK_NAME), "the server lists no node of the pack"
    return info


def test_english_and_chinese_are_shipped() -> None:
    assert {"en", "zh"} <= set(LANGUAGES)


def test_english_locale_is_the_schemas_text(object_info: dict[str, dict]) -> None:
    expected = english_node_defs(object_info, comfy_harness.PACK_NAME)
    shipped = read(LOCALES / "en" / "nodeDefs.json")
    assert shipped == expected, (
        "locales/en/nodeDefs.json differs from the node schemas: start ComfyUI with the pack and run "
        "`python -m scripts.make_locales --server http://127.0.0.1:8188`, then translate what it lists"
    )


def required_texts(object_info: dict[str, dict]) -> set[str]:
    """Dotted keys of every text a locale needs: display names, descriptions, every input's and output's
    name and, where the schema has one, its tooltip."""
    keys = set()
    for node, info in pack_nodes(object_info, comfy_harness.PACK_NAME).items():
        keys.add(f"{node}.display_name")
        if info.get("description"):
            keys.add(f"{node}.description")
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                keys.add(f"{node}.inputs.{name}.name")
                if len(spec) > 1 and spec[1].get("tooltip"):
                    keys.add(f"{node}.inputs.{name}.tooltip")
        tooltips = info.get("output_tooltips") or []
        for index in range(len(info["output_name"])):
            keys.add(f"{node}.outputs.{index}.name")
            if index < len(tooltips) and tooltips[index]:
                keys.add(f"{node}.outputs.{index}.tooltip")
    return keys


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_node_input_and_output_is_translated(object_info: dict[str, dict], language: str) -> None:
    node_defs = read(LOCALES / language / "nodeDefs.json")
    have = locale_keys(node_defs)
    wanted = required_texts(object_info)
    assert not wanted - have, f"locales/{language}/nodeDefs.json lacks {sorted(wanted - have)}"
    assert not have - wanted, f"locales/{language}/nodeDefs.json has texts of no schema: {sorted(have - wanted)}"

    def value(key: str) -> object:
        node, *path = key.split(".")
        entry = node_defs[node]
        for part in path:
            entry = entry[part]
        return entry

    empty = [key for key in sorted(have) if not (isinstance(value(key), str) and value(key).strip())]
    assert not empty, f"locales/{language}/nodeDefs.json: empty texts {empty}"
    if language.startswith("zh"):
        # Names may stay Latin (CLIP, VAE); sentences must be Chinese, not a copy of the English.
        untranslated = [
            key for key in sorted(have) if key.endswith(("tooltip", "description")) and not HAN.search(value(key))
        ]
        assert not untranslated, f"locales/{language}/nodeDefs.json: English left in {untranslated}"


def test_every_locale_names_the_category(object_info: dict[str, dict]) -> None:
    categories = {info["category"] for info in pack_nodes(object_info, comfy_harness.PACK_NAME).values()}
    segments = {segment for category in categories for segment in category.split("/")}
    for language in LANGUAGES:
        named = read(LOCALES / language / "main.json").get("nodeCategories", {})
        assert segments <= set(named), f"locales/{language}/main.json lacks the categories {segments - set(named)}"


def test_the_server_serves_the_locales(comfy_server) -> None:
    response = comfy_server.get("/i18n")
    response.raise_for_status()
    served = response.json()
    for language in LANGUAGES:
        node_defs = read(LOCALES / language / "nodeDefs.json")
        assert language in served, f"GET /i18n has no {language!r}"
        for node, entry in node_defs.items():
            assert served[language]["nodeDefs"].get(node) == entry, f"GET /i18n serves another {language} {node}"
        categories = read(LOCALES / language / "main.json")["nodeCategories"]
        assert categories.items() <= served[language]["nodeCategories"].items()
