"""Checkpoints with the real SD1.5, SD2.x (v-prediction) and SDXL tensor shapes and random weights.

ComfyUI itself builds them: its model class for the family (full UNet config), its real CLIP
text encoders and the SD VAE, initialised as `harness.init_weights` does (ComfyUI's layers skip
their init), then saved by the model's own `state_dict_for_saving`, the layout the stock
`CheckpointLoaderSimple` reads and recognises by tensor shapes. Weights are stored in fp16
(half the disk and write time); on the CPU ComfyUI loads the UNet and VAE as fp32 and the text
encoders as fp16.

Each file is written once per machine into `CACHE/checkpoints` (a ComfyUI checkpoints folder
after `harness.boot()`), by a child process so that the writer's memory is given back
before a test loads the model (SDXL: about 7 GB to write, about 13 GB loaded).

    python -m devtools.checkpoints [family ...]     # write the missing ones now (from the repo root)
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .comfy_host import REPO
from .harness import CACHE, boot, init_weights
from .unet_layouts import SD1_BLOCKS, SD15, SDXL, UNET_COMMON

FOLDER = CACHE / "checkpoints"
VERSION = 1
"""Bump when the contents change, so that cached files of an older layout are not reused."""


@dataclass(frozen=True)
class Family:
    config: str
    """The class in comfy.supported_models the loader must detect."""
    unet: dict
    v_prediction: bool = False


FAMILIES: dict[str, Family] = {
    "sd15": Family("SD15", {**UNET_COMMON, **SD15, "num_heads": 8}),
    "sd2_v": Family(
        "SD20",
        {
            **UNET_COMMON,
            **SD1_BLOCKS,
            "adm_in_channels": None,
            "context_dim": 1024,
            "num_head_channels": 64,
            "use_linear_in_transformer": True,
        },
        v_prediction=True,
    ),
    "sdxl": Family("SDXL", {**UNET_COMMON, **SDXL, "num_head_channels": 64}),
}

_VAE = {
    "double_z": True,
    "z_channels": 4,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
V_PRED_NORM = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
"""ComfyUI calls an SD2 UNet v-prediction when this bias has a std above 0.09 (SD20.model_type)."""


def filename(family: str) -> str:
    if family not in FAMILIES:
        raise ValueError(f"unknown checkpoint family {family!r}; known: {', '.join(FAMILIES)}")
    return f"p2p-random-{family}-v{VERSION}.safetensors"


def checkpoint(family: str) -> str:
    """The `ckpt_name` of the family's checkpoint for CheckpointLoaderSimple; written first if missing."""
    name = filename(family)
    if not (FOLDER / name).exists():
        subprocess.run([sys.executable, "-m", "devtools.checkpoints", family], check=True, cwd=REPO)
    return name


def _state_dict(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, built by ComfyUI's classes in fp16."""
    boot()
    import comfy.ldm.models.autoencoder
    import comfy.sd
    import comfy.supported_models

    spec = FAMILIES[family]
    config = getattr(comfy.supported_models, spec.config)(dict(spec.unet))
    config.set_inference_dtype(torch.float16, None)
    model = config.get_model({})
    init_weights(model, seed=seed)
    if spec.v_prediction:
        bias = model.diffusion_model.get_parameter(V_PRED_NORM)
        with torch.no_grad():
            bias.copy_(torch.tensor([0.1, -0.1]).repeat(bias.numel() // 2))
    clip = comfy.sd.CLIP(config.clip_target({}), model_options={"dtype": torch.float16})
    init_weights(clip.cond_stage_model, seed=seed + 1, attn_std=0.02)
    vae = comfy.ldm.models.autoencoder.AutoencoderKL(ddconfig=_VAE, embed_dim=4)
    init_weights(vae, seed=seed + 2)
    vae_sd = {k: v.half() for k, v in vae.state_dict().items()}
    del vae
    sd = model.state_dict_for_saving(clip.get_sd(), vae_sd)
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def write(family: str) -> Path:
    """Write the family's checkpoint (atomically: a concurrent writer never leaves half a file)."""
    boot()
    import comfy.utils

    path = FOLDER / filename(family)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    comfy.utils.save_torch_file(_state_dict(family), str(partial), metadata={"p2p_fixture": family})
    partial.replace(path)
    return path


if __name__ == "__main__":
    for name in sys.argv[1:] or list(FAMILIES):
        if not (FOLDER / filename(name)).exists():
            print(f"writing {write(name)}", flush=True)
