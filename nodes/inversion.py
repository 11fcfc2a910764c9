"""DDIMInvert, and `pin_source`: the edit nodes' `inversion` input, which makes the source branch
follow an inversion trajectory so that it reconstructs the photo (p2p_core/inversion.py).

Samplers that support pinning: `euler` and `ddim` (ComfyUI's ddim is Euler on the same schedule),
from KSamplerAdvanced (add_noise: disable) or SamplerCustomAdvanced (DisableNoise), with the steps
and scheduler the photo was inverted with (or a part of that schedule). Any other sampler, added
noise, another schedule or another latent is refused with a message before the first step.
"""

from __future__ import annotations

import math
from typing import Any

import comfy.model_management
import comfy.patcher_extension
import comfy.sample
import comfy.samplers
import latent_preview
import torch
from comfy_api.latest import io

from ..p2p_core.inversion import Trajectory, invert, pinned_denoised
from .patching import UserError, edit_state, sampler_name
from .types import CATEGORY

P2PInversion = io.Custom("P2P_INVERSION")
"""A p2p_core.inversion.Trajectory: the states of an inversion, per sigma, in the sampler's space."""

PIN_KEY = "prompt_to_prompt_inversion"
PINNING_SAMPLERS = {"sample_euler": "euler / ddim"}
"""Sampler functions whose step is the Euler step that pinning inverts, by name."""


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
        raise UserError(f"DDIMInvert: cfg {cfg} needs a negative conditioning (or set cfg to 1)")
    if edit_state(model) is not None or any(isinstance(f, SourcePin) for f in _post_cfg(model)):
        raise UserError("DDIMInvert: connect the plain model (the one before the P2P edit nodes)")
    sampling = model.get_model_object("model_sampling")
    ones = torch.ones(1, 1, 1, 1)
    started = sampling.noise_scaling(torch.tensor([float(sampling.sigma_max)]), torch.zeros_like(ones), ones)
    if not torch.equal(started, ones):
        raise UserError(
            "DDIMInvert: this model mixes noise into the latent (flow matching) instead of adding it, so a "
            "sampler cannot start from an inverted latent; supported: eps and v-prediction models (SD1.x, SD2.x, "
            "SDXL)"
        )
    samples = comfy.sample.fix_empty_latent_channels(model, samples)
    schedule = comfy.samplers.calculate_sigmas(sampling, scheduler, steps)
    sigmas = schedule.flip(0)
    if bool((sigmas[1:] <= sigmas[:-1]).any()):
        raise UserError(
            f"DDIMInvert: the {scheduler!r} schedule of {steps} steps repeats a sigma; choose another scheduler"
        )
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

    out = guider.sample(
        torch.zeros_like(samples),
        samples,
        comfy.samplers.KSAMPLER(sample_euler_inversion),
        sigmas,
        callback=latent_preview.prepare_callback(model, steps),
        seed=0,
    )
    device = comfy.model_management.intermediate_device()
    (trajectory,) = recorded
    return out.to(device), Trajectory(trajectory.sigmas, trajectory.states.to(device))


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

    def check_run(
        self,
        executor,
        noise,
        latent_image,
        sampler,
        sigmas,
        denoise_mask=None,
        callback=None,
        disable_pbar=False,
        seed=None,
        latent_shapes=None,
    ):
        function = getattr(sampler, "sampler_function", sampler)
        name = getattr(function, "__name__", "")
        if name not in PINNING_SAMPLERS:
            raise UserError(
                f"Prompt-to-Prompt inversion: the sampler {sampler_name(function)!r} cannot keep the source "
                f"branch on the inversion; use {' or '.join(PINNING_SAMPLERS.values())}"
            )
        if float(getattr(sampler, "extra_options", {}).get("s_churn", 0.0)) > 0:
            raise UserError("Prompt-to-Prompt inversion: the sampler adds noise (s_churn > 0); set s_churn to 0")
        if torch.count_nonzero(noise):
            raise UserError(
                "Prompt-to-Prompt inversion: the sampler adds noise to the inverted latent; use KSamplerAdvanced "
                "with add_noise 'disable', or SamplerCustomAdvanced with DisableNoise"
            )
        missing = [s for s in sigmas.tolist() if self.trajectory.index(s) is None]
        if missing:
            raise UserError(
                f"Prompt-to-Prompt inversion: the sampler's schedule ({len(sigmas) - 1} steps, sigma "
                f"{missing[0]:.6g}) is not the one DDIMInvert inverted along ({len(self.trajectory.sigmas) - 1} "
                "steps): give the sampler DDIMInvert's steps and scheduler, with denoise 1"
            )
        model = executor.class_obj.model_patcher.model
        start = self.trajectory.state(float(sigmas[0]))
        latent = model.process_latent_in(latent_image[:1].to(device=start.device, dtype=start.dtype))
        if latent.shape != start.shape or (latent - start).norm() > 1e-3 * start.norm():
            raise UserError(
                "Prompt-to-Prompt inversion: the sampler's latent is not where this inversion was at the "
                f"sampler's first sigma ({float(sigmas[0]):.6g}); connect DDIMInvert's LATENT output to the "
                "sampler and start at step 0"
            )
        return executor(
            noise,
            latent_image,
            sampler,
            sigmas,
            denoise_mask,
            callback,
            disable_pbar,
            seed,
            latent_shapes=latent_shapes,
        )


def pin_source(model: Any, inversion: Trajectory | None) -> Any:
    """A clone of `model` whose source row (row 0) follows `inversion`; `model` itself when None."""
    if inversion is None:
        return model
    if inversion.batch != 1:
        raise UserError(
            f"Prompt-to-Prompt inversion: DDIMInvert inverted {inversion.batch} images; an edit takes one photo "
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
    pinned.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, PIN_KEY, pin.check_run)
    return pinned


def inversion_input() -> io.Input:
    """The edit nodes' optional `inversion` input."""
    return P2PInversion.Input(
        "inversion",
        optional=True,
        tooltip=(
            "From DDIMInvert: the source branch (row 0) follows the photo's inversion and reconstructs it at "
            "any cfg, while the targets are edited. Sample DDIMInvert's LATENT with euler or ddim, add_noise "
            "disabled, and DDIMInvert's steps and scheduler."
        ),
    )


class DDIMInvert(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DDIMInvert",
            display_name="P2P DDIM Invert",
            category=CATEGORY,
            description=(
                "Inverts a VAE-encoded photo into the noise that the euler/ddim sampler turns back into it "
                "(DDIM inversion), and records the way there, so that P2P edits of a real photo keep it."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The plain model, the one you connect to the P2P edit nodes."),
                io.Conditioning.Input(
                    "positive",
                    tooltip=(
                        "A description of the photo. PromptPair's CONDITIONING works: its first row, the "
                        "source prompt, is used."
                    ),
                ),
                io.Latent.Input("latent", tooltip="The photo, VAE-encoded (VAEEncode)."),
                io.Int.Input(
                    "steps",
                    default=50,
                    min=1,
                    max=10000,
                    tooltip="Steps of the schedule to invert along: give the sampler the same steps and scheduler.",
                ),
                io.Combo.Input(
                    "scheduler",
                    options=comfy.samplers.SCHEDULER_NAMES,
                    default="normal",
                    tooltip="The sampler's scheduler ('ddim_uniform' is the paper's DDIM schedule).",
                ),
                io.Float.Input(
                    "cfg",
                    default=1.0,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    optional=True,
                    tooltip=(
                        "Guidance while inverting. 1 is plain DDIM inversion; the pinned source branch "
                        "reconstructs the photo at any value. Other values need a negative conditioning."
                    ),
                ),
                io.Conditioning.Input("negative", optional=True, tooltip="Only needed when cfg is not 1."),
            ],
            outputs=[
                io.Latent.Output(
                    tooltip=(
                        "The inverted noise: sample it with KSamplerAdvanced (add_noise 'disable') or "
                        "SamplerCustomAdvanced (DisableNoise), with the same steps and scheduler."
                    ),
                ),
                P2PInversion.Output(
                    "inversion",
                    tooltip="The inversion's states: connect to an edit node's inversion input.",
                ),
            ],
        )

    @classmethod
    def execute(cls, model, positive, latent, steps, scheduler, cfg=1.0, negative=None) -> io.NodeOutput:
        noise, trajectory = invert_latent(model, positive, latent["samples"], steps, scheduler, cfg, negative)
        return io.NodeOutput({"samples": noise}, trajectory)
