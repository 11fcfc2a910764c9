"""DDIMInvert and the pinned source branch on the rectified-flow models (tiny Flux.1 dev, SD3, Z-Image and Chroma of
ComfyUI's own classes, tests/test_dit.py's models): Euler inversion in sigma space on the flipped schedule, Flux at
cfg 1 with the guidance of its conditioning, the edit's source row back on the photo, the target edited; bad inputs
named."""

from __future__ import annotations

import pytest
import torch
from test_inversion import advanced, capture, inversion_graph, photo, relative_error  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("photo")

FLOW_PINNED_TOLERANCE = 64 * torch.finfo(torch.float32).eps
"""The source row's relative error with pinning: the pin makes every Euler step land on the recorded state, so the
error does not grow with the steps; what is left is float32 rounding of one step and of the latent format's
process_in / process_out round trip (a few ulps of the latent each), bounded here by 64 ulps (7.6e-6)."""
EDITED = 1e-3
"""The least change of the target row by the edit, as a share of the target's own way from the photo (the random
tiny models move it 0.1 to 7 % of the latent): a patch that does nothing leaves the two runs equal to float
rounding (below 1e-7 of the latent, under 1e-4 of that way); measured 0.01 (Flux) to 0.1 (SD3)."""

STARTED_ON_THE_INVERSION = 0.25
"""The farthest from the photo, as a share of the latent, that the unedited target row may land: started from the
inverted noise, plain sampling takes it back near the photo (measured 0.1 to 7 %); started where ComfyUI's samplers
start a flow model without added noise (x = (1 - sigma_max) * latent = 0) it lands a whole latent away (measured
0.99 to 1.01): the pinned source alone would still reconstruct then."""


def flow_graph(family: str, sampler: str = "euler", cfg: float = 1.0, guidance: float | None = None) -> dict:
    """inversion_graph on `family` (4 steps), the edit (AttentionReplace, the inversion pinned) sampled by
    KSamplerAdvanced without added noise, and the same edit with an empty window (cross_replace 0: the target
    sampled as its own prompt from the inverted noise); Flux's conditioning through FluxGuidance at `guidance`."""
    graph = inversion_graph(family, steps=4)
    graph["edit"]["inputs"]["self_layers"] = "all"
    positive = ["pair", 0]
    if guidance is not None:
        graph["guidance"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": positive, "guidance": guidance}}
        positive = ["guidance", 0]
    graph["invert"]["inputs"]["positive"] = positive
    graph["unedited"] = {**graph["edit"], "inputs": {**graph["edit"]["inputs"], "cross_replace": 0.0}}
    for name, model in (("edited", ["edit", 0]), ("window0", ["unedited", 0])):
        graph[f"sample_{name}"] = advanced(model, ["invert", 0], 4, cfg, sampler)
        graph[f"sample_{name}"]["inputs"]["positive"] = positive
        graph[f"capture_{name}"] = capture([f"sample_{name}", 0], name)
    return graph


@pytest.mark.parametrize(
    ("family", "sampler", "cfg", "guidance"),
    [
        ("flux", "euler", 1.0, 3.5),
        ("flux_schnell", "ddim", 1.0, None),
        ("sd3", "euler", 1.0, None),
        ("sd3", "ddim", 5.0, None),
        ("z_image", "euler", 1.0, None),
        ("chroma", "euler", 1.0, None),
    ],
)
def test_pinned_source_reconstructs_the_photo_and_the_target_is_edited(comfy, captured, family, sampler, cfg, guidance):
    comfy.run_graph(flow_graph(family, sampler, cfg, guidance))
    photo_latent = captured["photo"]
    edited, window0 = captured["edited"], captured["window0"]
    assert edited.shape == (2, 16, 8, 8)
    for out in (edited, window0):
        print(f"{family} {sampler} cfg {cfg}: source row {relative_error(out[0], photo_latent[0]):.3g}")
        assert relative_error(out[0], photo_latent[0]) < FLOW_PINNED_TOLERANCE
    # The edit acts: its target is not what the target prompt alone samples from the inverted noise.
    moved = relative_error(window0[1], photo_latent[0])
    assert moved > 100 * FLOW_PINNED_TOLERANCE  # the target row was sampled, not pinned
    assert moved < STARTED_ON_THE_INVERSION  # ... from the inverted noise, not from what a flow sampler starts at
    edit = float((edited[1] - window0[1]).norm() / (window0[1] - photo_latent[0]).norm())
    print(f"  target: {moved:.3g} of the latent from the photo; the edit changed it by {edit:.3g} of that")
    assert edit > EDITED


def test_flux_inverts_with_the_guidance_of_its_conditioning(comfy, captured):
    """Flux dev is guidance-distilled: DDIMInvert at cfg 1 runs it with the FluxGuidance value of its positive."""
    graph = inversion_graph("flux", steps=3)
    for guidance in (1.0, 4.0):
        graph[f"guidance{guidance}"] = {
            "class_type": "FluxGuidance",
            "inputs": {"conditioning": ["pair", 0], "guidance": guidance},
        }
        graph[f"invert{guidance}"] = {
            "class_type": "DDIMInvert",
            "inputs": {**graph["invert"]["inputs"], "positive": [f"guidance{guidance}", 0]},
        }
        graph[f"capture{guidance}"] = capture([f"invert{guidance}", 0], f"noise{guidance}")
    comfy.run_graph(graph)
    low, high = captured["noise1.0"], captured["noise4.0"]
    assert torch.isfinite(low).all() and torch.isfinite(high).all()
    assert relative_error(low, high) > 1e-3


def test_flow_inversion_bad_inputs_are_named(comfy):
    """An SD3 inversion at another shift (ModelSamplingSD3 1.0, not SD3's 3.0: another schedule) pinned on an edit
    of the plain model is refused by name, and the next prompt runs (tests/test_inversion.py: the other refusals)."""
    graph = inversion_graph("sd3", steps=4)
    graph["shift"] = {"class_type": "ModelSamplingSD3", "inputs": {"model": ["model", 0], "shift": 1.0}}
    graph["invert"]["inputs"]["model"] = ["shift", 0]
    graph["sample"] = advanced(["edit", 0], ["invert", 0], 4, 1.0, "euler")
    graph["capture"] = capture(["sample", 0], "refused")
    with pytest.raises(comfy.GraphError, match="not the one DDIMInvert inverted along"):
        comfy.run_graph(graph)
    comfy.run_graph(flow_graph("sd3"))
