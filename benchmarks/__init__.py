"""The speed and quality benchmarks (`python -m benchmarks.perf`, `.unet_step`, `.quality` from the repo root);
what each measures and its last results are in README.md and results/."""
