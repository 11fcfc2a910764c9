"""The real ComfyUI server with the pack installed, as a user runs it: `main.py --cpu` on a free loopback port.

The server loads the pack from a custom_nodes folder under its published name, plus the test
fixture nodes (tiny models by name); its output, input, temp and user folders live in a
temporary folder. Graphs go in through `POST /prompt` and come back through `GET /history`.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from PIL import Image

from . import harness
from .comfy_host import REPO, comfy_host


class ServerGraphError(RuntimeError):
    """A prompt the server refused (validation) or that failed while running; `message` is what the user reads."""

    def __init__(self, message: str, details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyClient:
    """The HTTP API of a running ComfyUI (`url`, e.g. http://127.0.0.1:8188), as the frontend uses it."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.session = requests.Session()

    def check_alive(self, prompt_id: str) -> None:
        """Called while waiting for a prompt; a server this process started raises when it has died."""

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.session.get(f"{self.url}{path}", timeout=kwargs.pop("timeout", 30), **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.session.post(f"{self.url}{path}", timeout=kwargs.pop("timeout", 30), **kwargs)

    def queue(self, graph: dict) -> str:
        """POST /prompt; returns the prompt id. A graph that fails validation raises ServerGraphError."""
        response = self.post("/prompt", json={"prompt": graph, "client_id": "p2p-tests"})
        body = response.json()
        if not response.ok:
            error = body.get("error", {})
            raise ServerGraphError(f"{error.get('message')}: {error.get('details')}", body.get("node_errors"))
        return body["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300.0) -> dict:
        """The history entry of a prompt once it has finished, successfully or not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            history = self.get(f"/history/{prompt_id}").json()
            if prompt_id in history:  # an entry appears when the prompt has finished
                return history[prompt_id]
            self.check_alive(prompt_id)
            time.sleep(0.1)
        raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout} s")

    @staticmethod
    def check(entry: dict) -> dict:
        """The entry itself when it succeeded; a ServerGraphError with the user's message otherwise."""
        if entry["status"]["status_str"] != "success":
            errors = [data for event, data in entry["status"]["messages"] if event == "execution_error"]
            message = errors[0]["exception_message"] if errors else "execution failed"
            raise ServerGraphError(message, errors)
        return entry

    def run(self, graph: dict, timeout: float = 300.0) -> dict:
        """Queue a graph, wait for it and return its history entry; raises ServerGraphError on failure."""
        return self.check(self.wait(self.queue(graph), timeout))

    def images(self, entry: dict) -> list[Image.Image]:
        """Every image the prompt's output nodes saved, fetched through GET /view as the frontend does."""
        out = []
        for node_output in entry["outputs"].values():
            for image in node_output.get("images", []):
                response = self.get("/view", params=image)
                response.raise_for_status()
                out.append(Image.open(io.BytesIO(response.content)).convert("RGB"))
        return out

    def upload_image(self, image: Image.Image, name: str) -> str:
        """POST /upload/image (as the frontend's LoadImage upload does), overwriting a file of that name; returns
        the name LoadImage takes."""
        data = io.BytesIO()
        image.save(data, format="PNG")
        response = self.post("/upload/image", files={"image": (name, data.getvalue(), "image/png")},
                             data={"overwrite": "true", "type": "input"})
        response.raise_for_status()
        body = response.json()
        return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]


class ComfyServer(ComfyClient):
    """A running `main.py`; use as a context manager or call `stop()`."""

    def __init__(self, startup_timeout: float = 180.0, front_end_root: Path | None = None) -> None:
        """`front_end_root`: a frontend's `static` folder served in place of the host's own frontend
        (`main.py --front-end-root`), e.g. another comfyui-frontend-package's."""
        self.root = Path(tempfile.mkdtemp(prefix="p2p-server-"))
        for kind in ("output", "input", "temp", "user", "fixtures"):
            (self.root / kind).mkdir()
        # load_custom_node names a module after its folder: a link gives the fixtures a clear name.
        (self.root / "fixtures" / "p2p_test_fixtures").symlink_to(harness.FIXTURE_NODES, target_is_directory=True)
        config = self.root / "extra_model_paths.yaml"
        config.write_text(
            "p2p_tests:\n"
            "  custom_nodes: |\n"
            f"    {harness.pack_folder()}\n"
            f"    {self.root / 'fixtures'}\n"
            f"  checkpoints: {harness.CACHE / 'checkpoints'}\n"
        )
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.log_path = self.root / "server.log"
        env = dict(os.environ)
        # The fixture nodes import devtools.harness: the repo root goes on the server's module path.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--extra-model-paths-config",
            str(config),
            "--output-directory",
            str(self.root / "output"),
            "--input-directory",
            str(self.root / "input"),
            "--temp-directory",
            str(self.root / "temp"),
            "--user-directory",
            str(self.root / "user"),
            "--database-url",
            "sqlite:///:memory:",
        ]
        if front_end_root is not None:
            command += ["--front-end-root", str(front_end_root)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command, cwd=comfy_host(), env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        try:
            self._wait_ready(startup_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.process.returncode}:\n{self.log()[-4000:]}")
            try:
                if self.session.get(f"{self.url}/system_stats", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout} s:\n{self.log()[-4000:]}")

    def __enter__(self) -> ComfyServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Ctrl-C as a user would; killed if it does not stop within 15 s."""
        if self.process.poll() is None:
            self.process.send_signal(2)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self.session.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def check_alive(self, prompt_id: str) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log()[-4000:]}")

def unique_prefix() -> str:
    """A SaveImage filename prefix no other test uses."""
    return f"p2p-test-{uuid.uuid4().hex[:8]}"
