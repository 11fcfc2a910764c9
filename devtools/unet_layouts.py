"""The real UNet architectures of SD1.5 and SDXL as ComfyUI's config keys: plain dicts, no imports, so that both
the real-shape test checkpoints (`checkpoints.py`) and the GPU benchmark that runs with torch alone
(`benchmarks/unet_step.py`) build the same networks. `comfy.supported_models` recognises each and adds its
heads."""

UNET_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "model_channels": 320,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
}
SD1_BLOCKS = {
    "num_res_blocks": [2, 2, 2, 2],
    "channel_mult": [1, 2, 4, 4],
    "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
}
"""The block layout SD1.x and SD2.x share."""
SD15 = {**SD1_BLOCKS, "use_linear_in_transformer": False, "context_dim": 768, "adm_in_channels": None}
SDXL = {
    "num_res_blocks": [2, 2, 2],
    "channel_mult": [1, 2, 4],
    "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_middle": 10,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
    "use_linear_in_transformer": True,
    "context_dim": 2048,
    "adm_in_channels": 2816,
    "num_classes": "sequential",
}
