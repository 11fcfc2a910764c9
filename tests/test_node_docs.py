"""The node-docs pages (`web/docs/`): one per node the real server lists, in English and in every other locale.

The frontend asks for `/extensions/<pack>/docs/<node id>/<locale>.md`, then `/extensions/<pack>/docs/<node id>.md`,
and resolves a page's relative image paths against `/extensions/<pack>/docs/`. The English page is the
fallback (`<node id>.md`); each other locale of `locales/` has `<node id>/<locale>.md`. That the panel
renders them is checked in real Chromium by tests/test_browser.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from devtools import harness as comfy_harness
from scripts.make_locales import pack_nodes
from scripts.make_pack_images import DOC_IMAGES, RESULTS, result_names

DOCS = comfy_harness.REPO / "web" / "docs"
LANGUAGES = sorted(path.name for path in (comfy_harness.REPO / "locales").iterdir() if path.is_dir())
PAPER_TIP = {"en": "## Tip from the paper", "zh": "## 论文中的提示"}
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def page(node: str, language: str) -> Path:
    return DOCS / f"{node}.md" if language == "en" else DOCS / node / f"{language}.md"


@pytest.fixture(scope="module")
def nodes(comfy_server) -> dict[str, dict]:
    response = comfy_server.get("/object_info")
    response.raise_for_status()
    found = pack_nodes(response.json(), comfy_harness.PACK_NAME)
    assert found, "the server lists no node of the pack"
    return found


def test_every_locale_has_its_paper_tip_heading() -> None:
    assert set(LANGUAGES) <= set(PAPER_TIP), f"name the paper-tip heading of {set(LANGUAGES) - set(PAPER_TIP)}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_node_has_a_page(nodes: dict[str, dict], language: str) -> None:
    missing = [
        str(page(node, language).relative_to(comfy_harness.REPO)) for node in nodes if not page(node, language).exists()
    ]
    assert not missing, f"no docs page: {missing}"
    pages = {path.stem for path in DOCS.glob("*.md")} | {path.parent.name for path in DOCS.glob(f"*/{language}.md")}
    assert pages <= set(nodes), f"pages of nodes the pack does not register: {sorted(pages - set(nodes))}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_documents_each_input_and_output(nodes: dict[str, dict], language: str) -> None:
    gaps = []
    for node, info in nodes.items():
        text = page(node, language).read_text(encoding="utf-8")
        names = [name for section in ("required", "optional") for name in info["input"].get(section, {})]
        names += list(info["output_name"])
        gaps += [f"{node}: `{name}`" for name in names if f"`{name}`" not in text]
        if PAPER_TIP[language] not in text:
            gaps.append(f"{node}: no '{PAPER_TIP[language]}' section")
    assert not gaps, f"{language} pages lack {gaps}"


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_page_shows_a_picture_the_panel_can_load(nodes: dict[str, dict], language: str) -> None:
    for node in nodes:
        images = IMAGE.findall(page(node, language).read_text(encoding="utf-8"))
        assert images, f"{node} ({language}) shows no picture"
        for source in images:
            # Relative to /extensions/<pack>/docs/, where the server serves web/docs/ and nothing outside it.
            assert not source.startswith(("/", "http:", "https:", "..")), f"{node} ({language}): {source}"
            assert (DOCS / source).is_file(), f"{node} ({language}): {source} is not under web/docs/"


def test_the_pictures_are_the_demo_outputs() -> None:
    """web/docs/images/ holds the current docs/*_result.png: run `python -m scripts.make_pack_images` after the demo."""
    assert result_names(), "no docs/*_result.png"
    shipped = sorted(path.stem for path in DOC_IMAGES.glob("*.png"))
    assert shipped == result_names()
    stale = [
        name
        for name in shipped
        if (DOC_IMAGES / f"{name}.png").read_bytes() != (RESULTS / f"{name}_result.png").read_bytes()
    ]
    assert not stale, (
        f"web/docs/images/ differs from docs/*_result.png for {stale}: run python -m scripts.make_pack_images"
    )
