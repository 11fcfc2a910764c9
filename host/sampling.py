"""The edit's OUTER_SAMPLE and SAMPLER_SAMPLE wrappers and what they share with the other wrappers of the
pack: the one binding of ComfyUI's outer-sample arguments (`SampleCall`), noise shared by every branch, the
checks of the positive conditioning and of a compiled model, and the kind of a sampler."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import comfy.k_diffusion.sampling as k_sampling
import comfyui_version
import torch

from .errors import UserError
from .state import RUN_KEY, STATE_KEY, EditRun, EditState

WRAPPER_KEY = "prompt_to_prompt"


@dataclass(frozen=True)
class SampleCall:
    """The arguments of one `CFGGuider.outer_sample` call (ComfyUI's OUTER_SAMPLE executor), bound once."""

    executor: Any
    noise: torch.Tensor
    latent_image: torch.Tensor
    sampler: Any
    sigmas: torch.Tensor
    denoise_mask: torch.Tensor | None = None
    callback: Any = None
    disable_pbar: bool = False
    seed: int | None = None
    latent_shapes: list | None = None

    @property
    def guider(self) -> Any:
        """The CFGGuider that samples (its `model_options` are this run's)."""
        return self.executor.class_obj

    def run(self, **changes: Any) -> torch.Tensor:
        """The next wrapper's (or ComfyUI's) outer sample with these arguments, some of them changed."""
        call = replace(self, **changes)
        return call.executor(
            call.noise,
            call.latent_image,
            call.sampler,
            call.sigmas,
            call.denoise_mask,
            call.callback,
            call.disable_pbar,
            call.seed,
            latent_shapes=call.latent_shapes,
        )


def outer_sample_wrapper(function: Callable[[SampleCall], torch.Tensor]) -> Callable[..., torch.Tensor]:
    """An OUTER_SAMPLE wrapper that hands `function` its call bound as a SampleCall."""

    def wrapper(executor: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        return function(SampleCall(executor, *args, **kwargs))

    wrapper.__name__ = wrapper.__qualname__ = function.__name__
    return wrapper


def _host_samplers(*names: str) -> frozenset:
    """k-diffusion's sampling functions of these names that this host has (each host has its own set), unwrapped
    as `sampler_function` unwraps them (`torch.no_grad` wraps most)."""
    found = (getattr(k_sampling, f"sample_{name}", None) for name in names)
    return frozenset(inspect.unwrap(function) for function in found if function is not None)


BROWNIAN_NOISE_SAMPLERS = _host_samplers(
    *(
        f"{name}{device}"
        for name in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde")
        for device in ("", "_gpu")
    )
)
"""k-diffusion's samplers whose own noise sampler is a Brownian tree over [min sigma > 0, max sigma] (noise of an
interval, (W(t1) - W(t0)) / sqrt(|t1 - t0|)); the `_gpu` ones keep the tree on the model's device."""
GAUSSIAN_NOISE_SAMPLERS = _host_samplers(
    "euler_ancestral",
    "euler_ancestral_RF",
    "euler_ancestral_cfg_pp",
    "dpm_2_ancestral",
    "dpm_2_ancestral_RF",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_RF",
    "dpmpp_2s_ancestral_cfg_pp",
    "ddpm",
    "lcm",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "exp_heun_2_x0_sde",
    "sa_solver",
    "sa_solver_pece",
)
"""k-diffusion's samplers whose own noise sampler draws independent N(0, 1) noise per call (the seeded
`default_noise_sampler`), whatever the interval: some call it on an empty interval (sigma == sigma_next, e.g.
exp_heun_2_x0_sde's second stage), where a Brownian tree gives 0 / 0 = NaN."""


def sampler_function(sampler: Any) -> Any:
    """The k-diffusion sampling function behind a ComfyUI sampler object (KSAMPLER), through the wrappers
    that name what they wrap (`functools.wraps`); the object itself when it has none."""
    return inspect.unwrap(getattr(sampler, "sampler_function", sampler))


def sampler_name(function: Any) -> str:
    """'euler' for k-diffusion's `sample_euler`: a sampler's name as ComfyUI's sampler lists show it."""
    return getattr(function, "__name__", type(function).__name__).removeprefix("sample_")


def _shared_noise_sampler(function: Any, noise: torch.Tensor, sigmas: torch.Tensor, seed: int | None):
    """The noise sampler that the sampler `function` would build for a batch of one row, its draws expanded
    to every branch: `noise_sampler(sigma, sigma_next) -> [rows, C, H, W]`, all rows equal. Only this host's
    own samplers are recognised (by identity, not by name); any other that draws noise is refused by name."""
    first = noise[:1]
    rows = noise.shape[0]
    function = inspect.unwrap(function)
    if function in BROWNIAN_NOISE_SAMPLERS:
        positive = sigmas[sigmas > 0]
        on_cpu = not function.__name__.endswith("_gpu")
        one_row = k_sampling.BrownianTreeNoiseSampler(first, positive.min(), sigmas.max(), seed=seed, cpu=on_cpu)
    elif function in GAUSSIAN_NOISE_SAMPLERS:
        one_row = k_sampling.default_noise_sampler(first, seed=seed)
    else:
        raise UserError(
            f"Prompt-to-Prompt: the sampler {sampler_name(function)!r} draws noise while it samples, in a way this "
            "pack does not know, so the source and target branches would not get the same noise and the edit "
            "would compare different images; use one of ComfyUI's own samplers (euler, dpmpp_2m, euler_ancestral, "
            "dpmpp_2m_sde, ...)"
        )
    return lambda sigma, sigma_next: one_row(sigma, sigma_next).expand(rows, *first.shape[1:]).contiguous()


def check_conditioning(guider: Any, rows: int) -> None:
    """A UserError unless every positive conditioning holds one row per prompt."""
    for cond in guider.conds.get("positive", []):
        tokens = cond.get("cross_attn")
        if tokens is not None and tokens.shape[0] != rows:
            raise UserError(
                f"Prompt-to-Prompt: the positive conditioning holds {tokens.shape[0]} prompt(s) but the "
                f"edit needs {rows} (source + {rows - 1} target): connect PromptPair's CONDITIONING to the "
                "sampler's positive input"
            )


TORCH_COMPILE_KWARGS = "torch_compile_kwargs"
"""Where `comfy_api.torch_helpers.set_torch_compile_wrapper` (TorchCompileModel and the compile nodes of
other packs) keeps its torch.compile arguments in model_options."""


def check_compile(model_options: dict) -> None:
    """A UserError for a model compiled with fullgraph=True: torch.compile works around the edit's host-side
    part (AttentionPatch.prepare runs eagerly, a graph break), which fullgraph forbids, so it would fail
    deep inside dynamo."""
    if (model_options.get(TORCH_COMPILE_KWARGS) or {}).get("fullgraph"):
        raise UserError(
            "Prompt-to-Prompt: this model is compiled with torch.compile(fullgraph=True), which cannot run the "
            "edit (its per-step host work, the step lookup and attention observers, runs outside the graph): "
            "compile without fullgraph (ComfyUI's TorchCompileModel does)"
        )


def check_reached(run: EditRun) -> None:
    """A UserError unless the run's patches of every kind of attention saw the prompts' conditional rows:
    else the edit never happened, and the image would come out as if unedited."""
    state = run.state
    missing = [label for kind, label in state.family.kinds.items() if kind not in run.reached]
    if not missing:
        return
    batches = ""
    if run.foreign_batches:
        sizes = ", ".join(str(b) for b in sorted(run.foreign_batches))
        batches = (
            f" The patched attention was called with batches of {sizes} rows, not chunks of the "
            f"{state.prompts.rows} prompts (source + targets): a node changed the batch."
        )
    raise UserError(
        f"Prompt-to-Prompt: the edit never reached the model's {' and '.join(missing)} while sampling, so the "
        f"image would come out unedited.{batches} A node after the P2P nodes runs the model without the pack's "
        "attention patches (one that wraps the UNet or replaces its attention in a way the pack cannot wrap), "
        f"or this ComfyUI ({comfyui_version.__version__}) or this model routes attention around the "
        f"transformer-block patches ({state.family.name}). Connect the P2P nodes' MODEL to the sampler "
        "without that node; if that does not help, report it with your ComfyUI version."
    )


@outer_sample_wrapper
def edit_outer_sample(call: SampleCall) -> torch.Tensor:
    """Give every branch the source's latent and noise, ancestral/SDE samplers one shared noise, the
    attention patches on this run's options and this run's EditRun; fail if the edit never reached them."""
    check_compile(call.guider.model_options)
    options = call.guider.model_options["transformer_options"]  # this run's copy (CFGGuider.sample)
    state: EditState = options[STATE_KEY]
    rows = state.prompts.rows
    latent_image, denoise_mask = call.latent_image, call.denoise_mask
    batch = latent_image.shape[0]
    if batch not in (1, rows):
        raise UserError(
            f"Prompt-to-Prompt: the latent holds {batch} images but PromptPair has {rows} prompts "
            f"(source + {rows - 1} target): use a latent of batch 1 (every branch starts from the same "
            f"noise) or of batch {rows}"
        )
    check_conditioning(call.guider, rows)
    repeat = (rows,) + (1,) * (latent_image.ndim - 1)
    if batch == 1:
        latent_image = latent_image.repeat(repeat)
        if denoise_mask is not None and denoise_mask.shape[0] == 1:
            denoise_mask = denoise_mask.repeat((rows,) + (1,) * (denoise_mask.ndim - 1))
    noise = call.noise[:1].repeat(repeat)
    call = replace(
        call, noise=noise, latent_image=latent_image, denoise_mask=denoise_mask, latent_shapes=[latent_image.shape]
    )
    sampler = call.sampler
    function = getattr(sampler, "sampler_function", None)
    extra = getattr(sampler, "extra_options", None)
    draws_noise = (
        function is not None and extra is not None and "noise_sampler" in inspect.signature(function).parameters
    )
    if draws_noise and extra.get("noise_sampler") is not None:
        raise UserError(
            f"Prompt-to-Prompt: the sampler {sampler_name(sampler_function(sampler))!r} comes with its own noise "
            "sampler, which would give the source and target branches different noise; use a sampler without one"
        )
    noise_sampler = _shared_noise_sampler(function, noise, call.sigmas, call.seed) if draws_noise else None
    run = options[RUN_KEY] = EditRun(state)
    before = dict(options)
    state.family.install(options, state.sites)
    installed = [key for key, value in options.items() if key not in before or value is not before[key]]
    if draws_noise:  # the sampler object may be a cached node output: set and restore, never mutate its dict
        sampler.extra_options = {**extra, "noise_sampler": noise_sampler}
    try:
        output = call.run()
    finally:
        del options[RUN_KEY]
        for key in installed:  # the options as they were before the family's install
            if key in before:
                options[key] = before[key]
            else:
                del options[key]
        if draws_noise:
            sampler.extra_options = extra
    check_reached(run)
    return output


def edit_sampler_sample(executor: Any, guider: Any, sigmas: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The edit's SAMPLER_SAMPLE wrapper: the schedule's length is dynamic to torch.compile. The attention
    patches receive transformer_options, which hold the schedule (`sample_sigmas`, the tensor this wrapper
    gets), and a run of another step count would otherwise recompile every graph of the model once."""
    torch._dynamo.maybe_mark_dynamic(sigmas, 0)
    return executor(guider, sigmas, *args, **kwargs)
