"""DDIM inversion through ComfyUI's guider (`invert_latent`, DDIMInvert's work), and `pin_source`: what the
edit nodes' `inversion` input does, make the source branch follow an inversion trajectory so that it
reconstructs the photo (p2p_core/inversion.py).

Samplers that support pinning: `euler` and `ddim` (ComfyUI's ddim is Euler on the same schedule),
from KSamplerAdvanced (add_noise: disable) or SamplerCustomAdvanced (DisableNoise), with the steps
and scheduler the photo was inverted with (or a part of that schedule). Any other sampler, added
noise, another schedule or another latent is refused with a message before the first step.

Models: the inversion and the pin work in the sampler's space (ComfyUI's k-diffusion x and denoised D), the
same Euler step for every model; what differs by model is where a sampler starts and what the inverted state
is as a LATENT, both in `start_noise` and `invert_latent`:
- noise added (EPS, V_PREDICTION, EDM, X0: SD1.x, SD2.x, SDXL): x = latent + sigma * noise, so a sampler
  without added noise starts at the LATENT it is given;
- rectified flow (CONST: Flux, SD3/SD3.5, Qwen-Image, Z-Image, Chroma; Flux's guidance, from FluxGuidance in the
  conditioning, reaches the model as in sampling): x = sigma * noise + (1 - sigma) * latent, zero at sigma_max = 1
  without noise, so the pinned run hands the sampler the inverted state as its noise (a plain sampler cannot start
  from it).
"""

from __future__ import annotations

import math
from typing import Any

import comfy.k_diffusion.sampling as k_sampling
import comfy.model_management
import comfy.model_sampling
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import latent_preview
import torch

from ..p2p_core.inversion import Trajectory, invert, pinned_denoised
from .errors import UserError
from .sampling import SampleCall, outer_sample_wrapper, sampler_function, sampler_name
from .state import edit_state

PIN_KEY = "prompt_to_prompt_inversion"
PINNING_SAMPLERS = {sampler_function(k_sampling.sample_euler): "euler / ddim"}
"""Sampler functions whose step is the Euler step that pinning inverts (ComfyUI's ddim is sample_euler)."""


def invert_latent(
    model: Any,
    positive: list,
    samples: torch.Tensor,
    steps: int,
    scheduler: str = "normal",
    cfg: float = 1.0,
    negative: list | None = None,
) -> tuple[torch.Tensor, Trajectory]:
    """(inverted latent [B, C, H, W], trajectory) of the latent `samples` along the sampling schedule of
    `steps` and `scheduler`, flipped. Runs through ComfyUI's own guider (model loading, conditioning,
    latent scaling, patches), with a progress bar and ComfyUI's interrupt."""
    if not math.isclose(cfg, 1.0) and negative is None:
        raise UserError(f"cfg {cfg} needs a negative conditioning (or set cfg to 1)")
    if edit_state(model) is not None or any(isinstance(f, SourcePin) for f in _post_cfg(model)):
        raise UserError("connect the plain model (the one before the P2P edit nodes)")
    sampling = model.get_model_object("model_sampling")
    noise_is_added(sampling)  # refuses a model sampling no sampler can be started from an inversion of
    samples = comfy.sample.fix_empty_latent_channels(model, samples)
    schedule = comfy.samplers.calculate_sigmas(sampling, scheduler, steps)
    sigmas = schedule.flip(0)
    if bool((sigmas[1:] <= sigmas[:-1]).any()):
        raise UserError(f"the {scheduler!r} schedule of {steps} steps repeats a sigma; choose another scheduler")
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive} if negative is None else {"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    recorded: list[Trajectory] = []

    def sample_euler_inversion(model_k, x, sigmas, extra_args=None, callback=None, disable=None) -> torch.Tensor:
        extra_args = extra_args or {}
        s_in = x.new_ones([x.shape[0]])

        def on_step(i: int, x_i: torch.Tensor, denoised: torch.Tensor) -> None:
            comfy.model_management.throw_exception_if_processing_interrupted()
            if callback is not None:
                callback({"x": x_i, "i": i, "sigma": sigmas[i], "sigma_hat": sigmas[i], "denoised": denoised})

        trajectory = invert(lambda x_, sigma: model_k(x_, sigma * s_in, **extra_args), x, sigmas, on_step)
        recorded.append(trajectory)
        return trajectory.states[-1].to(x.dtype)

    # The guider's own output is the last state through inverse_noise_scaling at sigma_max: the identity where
    # noise is added, a division by 1 - sigma_max = 0 for rectified flow; the LATENT is the state itself.
    guider.sample(
        torch.zeros_like(samples),
        samples,
        comfy.samplers.KSAMPLER(sample_euler_inversion),
        sigmas,
        callback=latent_preview.prepare_callback(model, steps),
        seed=0,
    )
    device = comfy.model_management.intermediate_device()
    (trajectory,) = recorded
    inverted = model.model.process_latent_out(trajectory.states[-1])
    return inverted.to(device), Trajectory(trajectory.sigmas, trajectory.states.to(device))


def noise_is_added(sampling: Any) -> bool:
    """Whether ComfyUI's samplers add noise to the latent for this model sampling (True) or mix it in as rectified
    flow (False); a UserError for any other, naming it. KSAMPLER starts at x = noise_scaling(sigma, noise, latent):

    - noise added (EPS, V_PREDICTION, EDM, X0: SD1.x, SD2.x, SDXL): x = latent + sigma * noise;
    - rectified flow (CONST: Flux, SD3/SD3.5, Qwen-Image, Z-Image, Chroma): x = sigma * noise + (1 - sigma) * latent;
    - neither (IMG_TO_IMG, COSMOS_RFLOW, another pack's): refused."""
    if isinstance(sampling, comfy.model_sampling.CONST):
        return False
    if isinstance(sampling, comfy.model_sampling.EPS) and not isinstance(sampling, comfy.model_sampling.IMG_TO_IMG):
        return True
    own = (c for c in type(sampling).__mro__ if c.__module__ == comfy.model_sampling.__name__)
    kind = next((c.__name__ for c in own if not issubclass(c, torch.nn.Module)), type(sampling).__name__)
    raise UserError(
        f"DDIMInvert: this model's sampling ({kind}) is not one a sampler can be started from an inversion of; "
        "supported: models that add noise (eps, v-prediction, EDM, x0: SD1.x, SD2.x, SDXL) and rectified flow "
        "(Flux, SD3/SD3.5, Qwen-Image, Z-Image, Chroma)"
    )


def start_noise(sampling: Any, latent: torch.Tensor) -> torch.Tensor:
    """The noise [B, C, ...] with which ComfyUI's samplers start at the state `latent` [B, C, ...] (the model's
    space, process_latent_in applied): zero where noise is added (x = latent), the latent itself for rectified
    flow (x = sigma * latent + (1 - sigma) * latent = latent at any sigma; at sigma_max = 1 a zero noise would
    give x = 0)."""
    return torch.zeros_like(latent) if noise_is_added(sampling) else latent


def _post_cfg(model: Any) -> list:
    return model.model_options.get("sampler_post_cfg_function", [])


class SourcePin:
    """A post-CFG function: the source row's denoised value becomes the one whose Euler step lands on
    the trajectory's next state. Also the OUTER_SAMPLE check that the run is one it can pin."""

    def __init__(self, trajectory: Trajectory) -> None:
        self.trajectory = trajectory

    def __deepcopy__(self, memo: dict) -> SourcePin:
        return self  # immutable; ComfyUI deep-copies model_options on every clone

    def __call__(self, args: dict) -> torch.Tensor:
        denoised, x = args["denoised"], args["input"]
        sigma = float(args["sigma"].flatten()[0])
        sample_sigmas = args["model_options"]["transformer_options"]["sample_sigmas"].tolist()
        step = next((i for i, s in enumerate(sample_sigmas[:-1]) if math.isclose(s, sigma, rel_tol=1e-5)), None)
        if step is None:
            raise UserError(
                f"Prompt-to-Prompt inversion: the sampler evaluated the model at sigma {sigma:.6g}, between the "
                f"steps of its schedule; pinning supports {', '.join(PINNING_SAMPLERS.values())} only"
            )
        sigma_next = sample_sigmas[step + 1]
        rows = self.trajectory.batch
        target = self.trajectory.state(sigma_next).to(device=x.device, dtype=x.dtype)
        source = pinned_denoised(x[:rows], sigma, sigma_next, target)
        return torch.cat([source.to(denoised.dtype), denoised[rows:]])

    def check_run(self, call: SampleCall) -> torch.Tensor:
        function = sampler_function(call.sampler)
        if function not in PINNING_SAMPLERS:
            raise UserError(
                f"Prompt-to-Prompt inversion: the sampler {sampler_name(function)!r} cannot keep the source "
                f"branch on the inversion; use {' or '.join(PINNING_SAMPLERS.values())}"
            )
        if float(getattr(call.sampler, "extra_options", {}).get("s_churn", 0.0)) > 0:
            raise UserError("Prompt-to-Prompt inversion: the sampler adds noise (s_churn > 0); set s_churn to 0")
        if torch.count_nonzero(call.noise):
            raise UserError(
                "Prompt-to-Prompt inversion: the sampler adds noise to the inverted latent; use KSamplerAdvanced "
                "with add_noise 'disable', or SamplerCustomAdvanced with DisableNoise"
            )
        sigmas = call.sigmas
        missing = [s for s in sigmas.tolist() if self.trajectory.index(s) is None]
        if missing:
            raise UserError(
                f"Prompt-to-Prompt inversion: the sampler's schedule ({len(sigmas) - 1} steps, sigma "
                f"{missing[0]:.6g}) is not the one DDIMInvert inverted along ({len(self.trajectory.sigmas) - 1} "
                "steps): give the sampler DDIMInvert's steps and scheduler, with denoise 1"
            )
        model = call.guider.model_patcher.model
        start = self.trajectory.state(float(sigmas[0]))
        latent = model.process_latent_in(call.latent_image[:1].to(device=start.device, dtype=start.dtype))
        if latent.shape != start.shape or not (latent - start).norm() <= 1e-3 * start.norm():  # NaN: refused
            raise UserError(
                "Prompt-to-Prompt inversion: the sampler's latent is not where this inversion was at the "
                f"sampler's first sigma ({float(sigmas[0]):.6g}); connect DDIMInvert's LATENT output to the "
                "sampler and start at step 0"
            )
        sampling = call.guider.model_patcher.get_model_object("model_sampling")
        return call.run(noise=start_noise(sampling, model.process_latent_in(call.latent_image)).to(call.noise))


def pin_source(model: Any, inversion: Trajectory | None) -> Any:
    """A clone of `model` whose source row (row 0) follows `inversion`; `model` itself when None."""
    if inversion is None:
        return model
    if inversion.batch != 1:
        raise UserError(
            f"inversion: DDIMInvert inverted {inversion.batch} images; an edit takes one photo "
            "(invert a latent of batch 1)"
        )
    pin = SourcePin(inversion)
    pinned = model.clone()
    # First, so that post-CFG functions after it (LocalBlend's) see the pinned source.
    pinned.model_options["sampler_post_cfg_function"] = [
        pin,
        *(f for f in _post_cfg(pinned) if not isinstance(f, SourcePin)),
    ]
    pinned.remove_wrappers_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, PIN_KEY)
    pinned.add_wrapper_with_key(
        comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, PIN_KEY, outer_sample_wrapper(pin.check_run)
    )
    return pinned
