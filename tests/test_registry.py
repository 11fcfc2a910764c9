"""What the Comfy Registry and ComfyUI-Manager's scan expect of the pack.

`pyproject.toml` read by the host's own parser (`comfy_config.config_parser`, as ComfyUI reads a
custom node's metadata): a semantic version, classifiers for the registry's OS and accelerator
filters, an icon (square PNG, at most 400 px) and a banner drawn by scripts/make_pack_images.py; the
registry's publish workflow; and no code of the pack that runs `pip`, `eval` or `exec`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from devtools import harness as comfy_harness
from scripts.make_pack_images import BANNER, ICON, make_banner, make_icon

REPO = comfy_harness.REPO
PYPROJECT = REPO / "pyproject.toml"
RAW_FILES = "https://raw.githubusercontent.com/p2p-comfy/comfyui-prompt-to-prompt/main/"
# What ComfyUI loads of the pack: its code, its glue, the demo model's code and its frontend extension.
PACK_CODE = ["__init__.py", "nodes", "p2p_core", "host", "demo", "web"]


@pytest.fixture(scope="module")
def config(comfy):
    from comfy_config import config_parser

    return config_parser.extract_node_configuration(str(REPO))


def test_the_host_reads_a_semantic_version_and_the_classifiers(config) -> None:
    assert config.project.name == comfy_harness.PACK_NAME
    assert re.fullmatch(r"\d+\.\d+\.\d+", config.project.version), config.project.version
    assert config.project.version == "0.2.0"
    assert config.project.supported_os == ["OS Independent"]
    assert "GPU :: NVIDIA CUDA" in config.project.supported_accelerators
    assert config.project.license.file == "LICENSE" and (REPO / "LICENSE").is_file()
    assert config.project.urls.repository.startswith("https://github.com/")
    assert config.tool_comfy.publisher_id and config.tool_comfy.display_name


def repo_file(url: str) -> Path:
    """The file of this repository that a raw.githubusercontent.com URL of its main branch names."""
    assert url.startswith(RAW_FILES), f"{url} is not a file of the repository's main branch"
    path = REPO / url.removeprefix(RAW_FILES)
    assert path.is_file(), f"{url}: no {path.relative_to(REPO)} in the repository"
    return path


def test_the_icon_is_a_square_png_of_at_most_400_px(config) -> None:
    path = repo_file(config.tool_comfy.icon)
    assert path == ICON
    with Image.open(path) as icon:
        assert icon.format == "PNG" and icon.width == icon.height <= 400, (icon.format, icon.size)


def test_the_banner_is_a_wide_png(comfy) -> None:
    from comfy_config import config_parser

    # ComfyUI 0.3.75's model of [tool.comfy] has no banner field yet: read the table as the host loads it.
    banner_url = config_parser.load_pyproject_settings(PYPROJECT).tool["comfy"]["Banner"]
    path = repo_file(banner_url)
    assert path == BANNER
    with Image.open(path) as banner:
        assert banner.format == "PNG" and banner.width >= 2 * banner.height, banner.size


def test_the_icon_and_banner_are_the_scripts_drawing_of_the_demo_outputs() -> None:
    """After the demo's pictures change, run `python -m scripts.make_pack_images`."""
    for path, drawing in ((ICON, make_icon()), (BANNER, make_banner())):
        with Image.open(path) as shipped:
            assert shipped.convert("RGB").tobytes() == drawing.tobytes(), f"{path.name} is stale"


def test_the_publish_workflow_uses_the_registry_action() -> None:
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "publish.yml").read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    [publish] = [step for step in steps if step.get("uses", "").startswith("Comfy-Org/publish-node-action@")]
    assert publish["with"]["personal_access_token"] == "${{ secrets.REGISTRY_ACCESS_TOKEN }}"
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads the key `on` as true
    assert "pyproject.toml" in triggers["push"]["paths"]


PIP = re.compile(r"\b(pip3?|ensurepip)\b")


def python_problems(path: Path) -> list[str]:
    """Calls of eval/exec, imports of pip, and any string naming pip (a command line, a module name)."""
    problems = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
            problems.append(f"{where}: calls {node.func.id}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            problems += [f"{where}: imports {m}" for m in modules if m.split(".")[0] in ("pip", "ensurepip")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if PIP.search(node.value) or node.value in ("eval", "exec"):
                problems.append(f"{where}: the string {node.value[:60]!r}")
    return problems


def javascript_problems(path: Path) -> list[str]:
    problems = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.search(r"\beval\s*\(|\bnew\s+Function\s*\(|\bpip3?\b", line):
            problems.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:80]}")
    return problems


def pack_files(suffix: str) -> list[Path]:
    files = []
    for name in PACK_CODE:
        path = REPO / name
        files += [path] if path.is_file() and path.suffix == suffix else sorted(path.rglob(f"*{suffix}"))
    return files


def test_nothing_in_the_pack_runs_pip_or_eval() -> None:
    python, javascript = pack_files(".py"), pack_files(".js")
    assert REPO / "__init__.py" in python and REPO / "web" / "p2p.js" in javascript
    problems = [problem for path in python for problem in python_problems(path)]
    problems += [problem for path in javascript for problem in javascript_problems(path)]
    assert not problems, problems
