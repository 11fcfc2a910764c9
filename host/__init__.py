"""The ComfyUI glue of the pack (host adapters): edit state, sampler wrappers, recorders, inversion pinning
shared by every attention family, and one module per family (`unet.py`); node classes live in `nodes/`."""
