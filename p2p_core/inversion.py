"""DDIM inversion as Euler steps up the sigma schedule, and the pinned source branch (Direct Inversion).

Everything lives in the sampler's space, x = x0 + sigma * eps (a k-diffusion "VE" latent): an Euler
step down the schedule with a deterministic denoiser is a DDIM step, so running the same Euler step
up the schedule is DDIM inversion. The step from sigma_i to sigma_{i+1} evaluates the denoiser at the
current state and the *upper* sigma,

    eps_i   = (x_i - D(x_i, sigma_{i+1})) / sigma_{i+1}
    x_{i+1} = x_i + (sigma_{i+1} - sigma_i) * eps_i

(the timestep the reference's `ddim_loop` uses: sampling down from sigma_{i+1} evaluates the model
at that same sigma, and the first step, from the clean latent at sigma 0, is well defined). One
model evaluation per step, as sampling.

Pinning (Ju et al. 2023, "Direct Inversion"): during sampling, the source branch's denoised value is
replaced by the one that makes an Euler step from `x` at `sigma` land exactly on the recorded state
at `sigma_next`:

    D_pin = x - sigma * (x_next - x) / (sigma_next - sigma)

so the source branch retraces the inversion trajectory and ends on the clean latent, whatever the
guidance scale, while the other rows are sampled as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""D(x [B, C, ...], sigma [] ) -> denoised [B, C, ...]: the model's estimate of the clean latent."""


@dataclass(frozen=True)
class Trajectory:
    """The states an inversion passed through.

    sigmas: [S + 1] increasing, sigmas[0] the clean latent's (0 for a full inversion).
    states: [S + 1, B, C, ...] float32; states[0] the clean latent, states[-1] the inverted noise.
    """

    sigmas: torch.Tensor
    states: torch.Tensor

    def __post_init__(self) -> None:
        if self.sigmas.ndim != 1 or self.states.shape[0] != self.sigmas.shape[0]:
            raise ValueError(
                f"a trajectory needs one state per sigma: {tuple(self.sigmas.shape)} sigmas, "
                f"{tuple(self.states.shape)} states"
            )

    @property
    def batch(self) -> int:
        return self.states.shape[1]

    def index(self, sigma: float, rel_tol: float = 1e-5) -> int | None:
        """The position of `sigma` among the recorded sigmas, or None if it was not recorded."""
        for i, recorded in enumerate(self.sigmas.tolist()):
            if abs(recorded - sigma) <= rel_tol * max(abs(recorded), abs(sigma)) + 1e-12:
                return i
        return None

    def state(self, sigma: float) -> torch.Tensor:
        """The recorded state [B, C, ...] at `sigma`."""
        i = self.index(sigma)
        if i is None:
            raise KeyError(f"sigma {sigma:.6g} is not on the inversion's schedule")
        return self.states[i]


def invert(
    denoise: Denoise,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> Trajectory:
    """Euler inversion of `x0` [B, C, ...] up the increasing schedule `sigmas` [S + 1].

    `on_step(i, x_i, denoised_i)` is called after every model evaluation (progress, interrupt).
    The returned trajectory holds every state as float32 on `x0`'s device.
    """
    if sigmas.ndim != 1 or sigmas.shape[0] < 2:
        raise ValueError(f"inversion needs a schedule of at least 2 sigmas, got shape {tuple(sigmas.shape)}")
    if bool((sigmas[1:] <= sigmas[:-1]).any()):
        raise ValueError("inversion needs an increasing schedule (the sampling sigmas, flipped)")
    x = x0
    states = [x0.float()]
    for i, (sigma, sigma_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        denoised = denoise(x, sigma_next)
        if on_step is not None:
            on_step(i, x, denoised)
        x = x + (sigma_next - sigma) * (x - denoised) / sigma_next
        states.append(x.float())
    return Trajectory(sigmas.detach().float().cpu(), torch.stack(states))


def pinned_denoised(x: torch.Tensor, sigma: float, sigma_next: float, x_next: torch.Tensor) -> torch.Tensor:
    """The denoised value [B, C, ...] that takes an Euler step from `x` at `sigma` to `x_next` at `sigma_next`."""
    if sigma == sigma_next:
        raise ValueError(f"an Euler step needs two different sigmas, got {sigma:.6g} twice")
    return x - sigma * (x_next - x) / (sigma_next - sigma)
