"""The ComfyUI glue (host adapters): what every attention family shares (errors, state, edit, sampling, recording,
masks, inversion, prompts, routes) and one module per attention family (`unet.py`); node classes are in `nodes/`."""
