import pytest

from devtools import harness


@pytest.fixture(scope="session")
def comfy():
    """The in-process ComfyUI host with the pack loaded."""
    harness.boot()
    return harness


@pytest.fixture
def captured(comfy):
    """Latents captured by P2PTestCaptureLatent nodes, by name (emptied for each test)."""
    latents = comfy.captured_latents()
    latents.clear()
    return latents


@pytest.fixture(scope="session")
def comfy_server():
    """The real ComfyUI server (`main.py --cpu`) with the pack and the test fixture nodes installed."""
    from devtools.server import ComfyServer

    with ComfyServer() as server:
        yield server


@pytest.fixture(autouse=True, scope="module")
def free_models_after_each_module():
    """After each test module, what its real-shape tests loaded is unloaded (devtools.harness.free_models)."""
    yield
    harness.free_models()
