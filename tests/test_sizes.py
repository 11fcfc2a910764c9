"""Any image size: a layer's grid and downsampling factor at sides the UNet pads.

The UNet halves a side with padding, so a layer 4x coarser than a latent of 75 x 100 has 19 x 25
queries, and sqrt(H * W / Nq) = 3.97 is not its factor. Self-attention injection picks its layers by
factor: at a side not divisible by 8 latent pixels it must inject into the same layers as at a side
that is.
"""

from __future__ import annotations

import pytest

from devtools import harness
from devtools.graphs import edit_graph

harness.boot()


def test_layer_grid_of_padded_sides():
    maps = harness.pack("p2p_core.maps")
    assert maps.layer_grid((75, 100), 19 * 25) == (4, 19, 25)
    assert maps.layer_grid((125, 125), 63 * 63) == (2, 63, 63)
    assert maps.layer_grid((125, 125), 32 * 32) == (4, 32, 32)
    assert maps.layer_grid((64, 96), 16 * 24) == (4, 16, 24)
    assert maps.layer_grid((75, 100), 7 * 11) is None


@pytest.fixture
def self_injections(comfy, monkeypatch) -> list[int]:
    """The query count of every self-attention injection of the fused path, as it happens."""
    unet = comfy.pack("host.unet")
    calls: list[int] = []
    inject = unet.self_call

    def counted(q, *args, **kwargs):
        calls.append(q.shape[1])
        return inject(q, *args, **kwargs)

    monkeypatch.setattr(unet, "self_call", counted)
    return calls


def injections(calls: list[int], family: str, width: int, height: int, self_layers: str) -> list[int]:
    calls.clear()
    inputs = {"self_replace": 1.0, "self_layers": self_layers}
    harness.run_graph(edit_graph(family=family, width=width, height=height, steps=2, edit_inputs=inputs))
    return list(calls)


@pytest.mark.parametrize(
    "family, odd, even, self_layers",
    [
        ("sd15", (800, 600), (768, 512), "coarse"),  # latent 100 x 75: the 1/4 layers are 25 x 19
        ("sd15", (600, 800), (512, 768), "coarse"),
        ("sd15", (200, 136), (256, 128), "medium"),  # latent 25 x 17: sides of 13 x 9 and 7 x 5
        ("sdxl", (1000, 1000), (1024, 1024), "coarse"),  # latent 125 x 125, the 1/4 layers 32 x 32
        ("sdxl", (1000, 1000), (1024, 1024), "medium"),  # and the 1/2 layers 63 x 63
    ],
)
def test_self_attention_injection_takes_the_same_layers_at_odd_sides(self_injections, family, odd, even, self_layers):
    at_odd = injections(self_injections, family, *odd, self_layers)
    at_even = injections(self_injections, family, *even, self_layers)
    assert at_even, "no injection at a side divisible by 64"
    assert len(at_odd) == len(at_even), f"{len(at_odd)} injections at {odd} px against {len(at_even)} at {even} px"
