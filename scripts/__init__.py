"""Command-line entry points, run as modules from the repo root (`python -m scripts.run_workflows`), and the
shell scripts that set up a machine, run the tests and run the demo."""
