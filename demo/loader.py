"""Build real ComfyUI MODEL, CLIP and VAE objects from a demo checkpoint (see `demo.model`): the UNet as an
SD-style model, the DiT as ComfyUI's SD3 model (`comfy.model_base.SD3`, its MMDiT), both on the demo's flow."""

from __future__ import annotations

from pathlib import Path

import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.model_sampling
import comfy.sd
import comfy.sd1_clip
import comfy.supported_models_base
import torch
from comfy import latent_formats

from .model import DIT_CONFIG, UNET_CONFIG, read_checkpoint

T_MAX = 0.999
"""The noisiest flow time ComfyUI samples from: sigma_max = 999, where 0.1 % of the image is left."""


class DemoFlowSampling(torch.nn.Module, comfy.model_sampling.EPS):
    """The rectified flow the demo models were trained on, shown to ComfyUI in the additive (EPS-like) form.

    Flow time t and the UNet input x_t = (1 - t) x0 + t noise; ComfyUI sees sigma = t / (1 - t) and
    x = x_t / (1 - t) = x0 + sigma * noise, as for SD. Both are the same ODE, so the samplers give the
    flow's trajectories, and an inverted latent sampled with add_noise disabled starts where the
    inversion ended (with the flow form, ComfyUI's noise scaling would zero it at sigma 1).
    """

    sigma_data = 1.0

    def __init__(self, multiplier: float = 1000.0) -> None:
        super().__init__()
        self.multiplier = multiplier
        t = torch.linspace(1.0, 1000.0, 1000) / 1000.0 * T_MAX
        self.register_buffer("sigmas", (t / (1.0 - t)).float())

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The model's timestep: flow time t = sigma / (1 + sigma), times 1000."""
        return sigma / (1.0 + sigma) * self.multiplier

    def sigma(self, timestep: torch.Tensor) -> torch.Tensor:
        t = (timestep / self.multiplier).clamp(max=T_MAX)
        return t / (1.0 - t)

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        t = (1.0 - percent) * T_MAX
        return t / (1.0 - t)

    def calculate_input(self, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x `[B, C, H, W]` -> the flow state x_t = x / (1 + sigma)."""
        return noise / (1.0 + comfy.model_sampling.reshape_sigma(sigma, noise.ndim))

    def calculate_denoised(self, sigma: torch.Tensor, model_output: torch.Tensor,
                           model_input: torch.Tensor) -> torch.Tensor:
        """x0 = x_t - t v with v = noise - x0 the model's output."""
        sigma = comfy.model_sampling.reshape_sigma(sigma, model_output.ndim)
        return (model_input - sigma * model_output) / (1.0 + sigma)


class DemoModelConfig(comfy.supported_models_base.BASE):
    """ComfyUI model config of the demo UNet: pixels, with `DemoFlowSampling` put on the model."""

    unet_config = UNET_CONFIG
    unet_extra_config: dict = {}
    latent_format = latent_formats.ChromaRadiance  # 3 channels, identity scaling
    memory_usage_factor = 1.0
    supported_inference_dtypes = [torch.float32]

    def model_type(self, state_dict: dict, prefix: str = "") -> comfy.model_base.ModelType:
        return comfy.model_base.ModelType.EPS


class DemoDiTConfig(DemoModelConfig):
    """ComfyUI model config of the demo DiT: ComfyUI's SD3 model (MMDiT, the text's pooled output as `y`)."""

    unet_config = DIT_CONFIG

    def get_model(self, state_dict: dict, prefix: str = "", device: torch.device | None = None) -> comfy.model_base.SD3:
        return comfy.model_base.SD3(self, model_type=self.model_type(state_dict, prefix), device=device)


CONFIGS: dict[str, type[DemoModelConfig]] = {"unet": DemoModelConfig, "dit": DemoDiTConfig}
"""The ComfyUI model config of each demo architecture (`demo.model.ARCHITECTURES`)."""


def load_demo(path: Path) -> tuple[comfy.model_patcher.ModelPatcher, comfy.sd.CLIP, comfy.sd.VAE, dict]:
    """Build the ComfyUI MODEL, CLIP and VAE of a demo checkpoint, plus its training info."""
    unet_sd, te_sd, meta = read_checkpoint(path)
    config = CONFIGS[meta["architecture"]](meta["unet_config"])
    config.set_inference_dtype(torch.float32, None)
    load_device = comfy.model_management.get_torch_device()
    model = config.get_model({}, device=comfy.model_management.unet_inital_load_device(1, torch.float32))
    model.model_sampling = DemoFlowSampling(meta["sampling"]["multiplier"])
    missing, unexpected = model.diffusion_model.load_state_dict(unet_sd, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: {meta['architecture']} weights do not fit "
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
