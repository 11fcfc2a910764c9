import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import comfy_harness  # noqa: E402


@pytest.fixture(scope="session")
def comfy():
    """The in-process ComfyUI host with the pack loaded."""
    comfy_harness.boot()
    return comfy_harness


@pytest.fixture
def captured(comfy):
    """Latents captured by P2PTestCaptureLatent nodes, by name."""
    import importlib

    fixtures = sys.modules.get(str(comfy_harness.REPO / "tests" / "fixture_nodes").replace(".", "_x_"))
    if fixtures is None:
        fixtures = importlib.import_module("fixture_nodes")
    fixtures.CAPTURED.clear()
    return fixtures.CAPTURED
