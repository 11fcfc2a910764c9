"""Make ComfyUI's `comfy` package importable outside a running ComfyUI (training, benchmarks, tests)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def ensure_comfy() -> None:
    """Put the ComfyUI host on `sys.path` if `comfy` is not importable yet, and run it on the CPU when
    there is no CUDA device. Does nothing inside a running ComfyUI."""
    if importlib.util.find_spec("comfy") is None:
        script = str(REPO / "scripts" / "comfy_host.py")
        host = subprocess.check_output([sys.executable, script], text=True).strip()
        sys.path.insert(0, host)
    if "comfy.model_management" not in sys.modules and not torch.cuda.is_available():
        import comfy.cli_args

        comfy.cli_args.args.cpu = True
