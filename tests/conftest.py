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
    """Latents captured by P2PTestCaptureLatent nodes, by name (emptied for each test)."""
    latents = comfy.captured_latents()
    latents.clear()
    return latents


@pytest.fixture(scope="session")
def comfy_server():
    """The real ComfyUI server (`main.py --cpu`) with the pack and the test fixture nodes installed."""
    from comfy_server import ComfyServer

    with ComfyServer() as server:
        yield server
