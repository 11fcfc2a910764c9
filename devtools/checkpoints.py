"""Model files with real tensor shapes and random weights: SD1.5, SD2.x (v-prediction), SDXL and SD3 medium
checkpoints, and a Flux.1 dev diffusion model at its real widths in a few blocks.

ComfyUI itself builds them: its model class for the family (full config), its real CLIP text encoders and
the SD VAE (SD3's: 16 latent channels), initialised as `harness.init_weights` / `init_dit_weights` do
(ComfyUI's layers skip their init), then saved by the model's own `state_dict_for_saving`, the layout the
stock `CheckpointLoaderSimple` reads and recognises by tensor shapes; the Flux file holds the transformer
alone, as Flux.1's are published, for the stock `UNETLoader` (Load Diffusion Model). Weights are stored in
fp16 (half the disk and write time); on the CPU ComfyUI loads the diffusion models and VAE as fp32 and the
text encoders as fp16.

Each file is written once per machine into `CACHE/checkpoints` or `CACHE/diffusion_models` (ComfyUI's
folders of those names after `harness.boot()`), by a child process so that the writer's memory is given
back before a test loads the model (SDXL: about 7 GB to write, about 13 GB loaded).

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
from .harness import CACHE, FLUX_WIDTHS, boot, flux_config, init_dit_weights, init_weights
from .unet_layouts import SD1_BLOCKS, SD15, SDXL, UNET_COMMON

VERSION = 1
"""Bump when the contents change, so that cached files of an older layout are not reused."""


@dataclass(frozen=True)
class Family:
    config: str
    """The class in comfy.supported_models the loader must detect."""
    unet: dict
    v_prediction: bool = False
    folder: str = "checkpoints"
    """ComfyUI's models folder: `checkpoints` (the model, its text encoders and VAE, for CheckpointLoaderSimple)
    or `diffusion_models` (the transformer alone, for UNETLoader)."""


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
    "sd3_medium": Family(
        "SD3",
        {
            "in_channels": 16,
            "out_channels": 16,
            "patch_size": 2,
            "depth": 24,
            "input_size": None,
            "adm_in_channels": 2048,
            "context_embedder_config": {
                "target": "torch.nn.Linear",
                "params": {"in_features": 4096, "out_features": 1536},
            },
            "num_patches": 36864,
            "pos_embed_max_size": 192,
            "pos_embed_scaling_factor": None,
            "x_block_self_attn_layers": [],
        },
    ),
    "flux_widths": Family(
        "Flux",
        {**FLUX_WIDTHS, "vec_in_dim": 768, "context_in_dim": 4096, "depth": 1, "depth_single_blocks": 1}
        | {"guidance_embed": True},
        folder="diffusion_models",
    ),
}
"""sd3_medium: SD3 medium's MMDiT as model_detection reads `sd3_medium_incl_clips` (24 joint blocks, 1536 wide in
24 heads of 64, 2.0B weights; up to 192x192 patches; its `y` the pooled CLIP-L and CLIP-G, 768 + 1280), with
CLIP-L and CLIP-G inside and no T5, as that file has. flux_widths: Flux.1 dev's transformer at its real widths
(FLUX_WIDTHS: 3072 wide, 24 heads of 128, MLP 4x; context 4096, T5-XXL's; pooled vector 768, CLIP-L's; guidance
embedded) in 1 double and 1 single block of its 19 and 38, 0.55B weights."""

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


def path(family: str) -> Path:
    """Where the family's file lies (written or not)."""
    name = filename(family)  # first: its error names an unknown family
    return CACHE / FAMILIES[family].folder / name


def checkpoint(family: str) -> str:
    """The file name of the family's model for its stock loader (CheckpointLoaderSimple's `ckpt_name`, UNETLoader's
    `unet_name`); written first if missing."""
    name = filename(family)
    if not path(family).exists():
        subprocess.run([sys.executable, "-m", "devtools.checkpoints", family], check=True, cwd=REPO)
    return name


def _state_dict(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The file's tensors, built by ComfyUI's classes in fp16."""
    boot()
    import comfy.sd
    import comfy.supported_models
    import comfy.supported_models_base
    import comfy.text_encoders.sd3_clip

    spec = FAMILIES[family]
    unet = flux_config(**spec.unet) if spec.config == "Flux" else dict(spec.unet)
    config = getattr(comfy.supported_models, spec.config)(unet)
    config.set_inference_dtype(torch.float16, None)
    model = config.get_model({})
    if spec.config in ("SD3", "Flux"):
        # std 0.02 as the UNets' (the tiny DiTs' 0.1 at 64 wide): at 1536-3072 wide a layer about keeps its scale
        init_dit_weights(model.diffusion_model, model.diffusion_model.hidden_size, std=0.02, seed=seed)
    else:
        init_weights(model, seed=seed)
    if spec.v_prediction:
        bias = model.diffusion_model.get_parameter(V_PRED_NORM)
        with torch.no_grad():
            bias.copy_(torch.tensor([0.1, -0.1]).repeat(bias.numel() // 2))
    if spec.folder == "diffusion_models":
        sd = model.diffusion_model.state_dict()
    else:
        if spec.config == "SD3":  # its config's own target names the encoders it finds in a file: none yet
            target = comfy.supported_models_base.ClipTarget(
                comfy.text_encoders.sd3_clip.SD3Tokenizer, comfy.text_encoders.sd3_clip.sd3_clip(t5=False)
            )
        else:
            target = config.clip_target({})
        clip = comfy.sd.CLIP(target, model_options={"dtype": torch.float16})
        init_weights(clip.cond_stage_model, seed=seed + 1, attn_std=0.02)
        sd = model.state_dict_for_saving(clip.get_sd(), _vae(config.latent_format.latent_channels, seed + 2))
    return {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}


def _vae(latent_channels: int, seed: int) -> dict[str, torch.Tensor]:
    """The SD VAE's tensors in fp16: SD1.x/SDXL's (4 latent channels, with its quant convs) or SD3's (16 latent
    channels, none), as the stock loader tells them apart."""
    import comfy.ldm.models.autoencoder as autoencoder

    ddconfig = {**_VAE, "z_channels": latent_channels}
    if latent_channels == 4:
        vae = autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    else:
        vae = autoencoder.AutoencodingEngine(
            regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
            encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": ddconfig},
            decoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": ddconfig},
        )
    init_weights(vae, seed=seed)
    return {k: v.half() for k, v in vae.state_dict().items()}


def write(family: str) -> Path:
    """Write the family's file (atomically: a concurrent writer never leaves half a file)."""
    boot()
    import comfy.utils

    target = path(family)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    comfy.utils.save_torch_file(_state_dict(family), str(partial), metadata={"p2p_fixture": family})
    partial.replace(target)
    return target


if __name__ == "__main__":
    for name in sys.argv[1:] or list(FAMILIES):
        if not path(name).exists():
            print(f"writing {write(name)}", flush=True)
