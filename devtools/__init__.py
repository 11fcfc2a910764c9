"""Developer tools shared by tests, benchmarks and scripts: a ComfyUI host booted in-process (`harness`), the
real server (`server`), test graphs and fixture models and checkpoints. Run from the repo root; not shipped."""
