"""Build real ComfyUI MODEL, CLIP and VAE objects from a demo checkpoint (see `demo.model`)."""

from __future__ import annotations

from pathlib import Path

import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
import torch
from comfy import latent_formats

from .model import SAMPLING, UNET_CONFIG, read_checkpoint


class DemoModelConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config of the demo UNet: rectified flow on RGB pixels."""

    unet_config = UNET_CONFIG
    unet_extra_config: dict = {}
    sampling_settings = SAMPLING
    latent_format = latent_formats.ChromaRadiance  # 3 channels, identity scaling
    memory_usage_factor = 1.0
    supported_inference_dtypes = [torch.float32]

    def model_type(self, state_dict: dict, prefix: str = "") -> comfy.model_base.ModelType:
        return comfy.model_base.ModelType.FLOW


def load_demo(path: Path) -> tuple[comfy.model_patcher.ModelPatcher, comfy.sd.CLIP, comfy.sd.VAE, dict]:
    """Build the ComfyUI MODEL, CLIP and VAE of a demo checkpoint, plus its training info."""
    unet_sd, te_sd, meta = read_checkpoint(path)
    config = DemoModelConfig(meta["unet_config"])
    config.sampling_settings = dict(meta["sampling"])
    config.set_inference_dtype(torch.float32, None)
    load_device = comfy.model_management.get_torch_device()
    model = config.get_model({}, device=comfy.model_management.unet_inital_load_device(1, torch.float32))
    missing, unexpected = model.diffusion_model.load_state_dict(unet_sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: UNet weights do not fit "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    patcher = comfy.model_patcher.ModelPatcher(model, load_device=load_device,
                                               offload_device=comfy.model_management.unet_offload_device())
    target = comfy.supported_models_base.ClipTarget(comfy.sd1_clip.SD1Tokenizer, comfy.sd1_clip.SD1ClipModel)
    options = {"clip_l_model_config": meta["text_config"], "dtype": torch.float32}
    clip = comfy.sd.CLIP(target, model_options=options)
    missing, unexpected = clip.load_sd(te_sd)
    if missing or unexpected:
        raise ValueError(f"{path}: text encoder weights do not fit (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    vae = comfy.sd.VAE(sd={"pixel_space_vae": torch.tensor(1.0)})
    return patcher, clip, vae, meta.get("info", {})
