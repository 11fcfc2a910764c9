"""Print the folder of the ComfyUI host the pack runs in (for shell scripts; devtools/comfy_host.py)."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[1] / "devtools" / "comfy_host.py"), run_name="__main__")
