"""demo/grow.py: a trained demo DiT grown to a finer patch and more joint blocks keeps what it computes."""

from __future__ import annotations

import pytest
import torch

from demo.grow import block_positions, halve_patch, insert_blocks


def mmdit(**overrides: object) -> torch.nn.Module:
    """A demo DiT of `DIT_CONFIG` with `overrides`, freshly initialised (`demo.model.build_dit`)."""
    from demo.model import build_dit

    return build_dit("cpu", **overrides)


def test_block_positions_keep_the_first_and_the_last_block_in_place() -> None:
    assert block_positions(3, 6) == [0, 2, 5]
    assert block_positions(3, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="cannot place 4 joint blocks among 3"):
        block_positions(4, 3)


def test_inserted_blocks_add_nothing_until_trained(comfy) -> None:
    """A 3-block DiT with every weight non-zero (as trained: open adaLN gates) and the 6-block DiT holding its
    blocks give the same prediction; the same 6 blocks with the new ones' gates opened do not."""
    small = mmdit(num_blocks=3)
    with torch.no_grad():
        for p in small.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    big = mmdit(num_blocks=6)
    big.load_state_dict(insert_blocks(small.state_dict(), big.state_dict(), 3, 6))
    gen = torch.Generator().manual_seed(0)
    x, context = torch.randn(2, 3, 32, 32, generator=gen), torch.randn(2, 77, 128, generator=gen)
    y = torch.randn(2, 128, generator=gen)
    timestep = torch.tensor([700.0, 200.0])
    with torch.no_grad():
        expected = small(x, timestep, context=context, y=y)
        assert torch.allclose(big(x, timestep, context=context, y=y), expected, rtol=0, atol=1e-6)
        big.joint_blocks[1].x_block.adaLN_modulation[1].bias.fill_(0.5)
        assert not torch.allclose(big(x, timestep, context=context, y=y), expected, atol=1e-3)


def test_halved_patch_embeds_a_flat_patch_as_before_and_draws_the_coarse_patch_averaged(comfy) -> None:
    coarse = mmdit(patch_size=4)
    with torch.no_grad():
        for p in (coarse.x_embedder.proj.weight, coarse.final_layer.linear.weight, coarse.final_layer.linear.bias):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    fine = mmdit(patch_size=2)
    fine.load_state_dict(halve_patch(coarse.state_dict(), channels=3))
    flat = torch.rand(1, 3, 1, 1, generator=torch.Generator().manual_seed(1)).expand(1, 3, 32, 32)
    with torch.no_grad():
        coarse_tokens = coarse.x_embedder.proj(flat)  # [1, D, 8, 8]
        fine_tokens = fine.x_embedder.proj(flat)  # [1, D, 16, 16]
        assert torch.allclose(fine_tokens[..., ::2, ::2], coarse_tokens, atol=1e-5)
        feature = torch.randn(1, 1, 128, generator=torch.Generator().manual_seed(2))
        coarse_patch = coarse.unpatchify(coarse.final_layer.linear(feature), hw=(4, 4))  # [1, 3, 4, 4]
        fine_patch = fine.unpatchify(fine.final_layer.linear(feature), hw=(2, 2))  # [1, 3, 2, 2]
        assert torch.allclose(fine_patch, torch.nn.functional.avg_pool2d(coarse_patch, 2), atol=1e-5)
    with pytest.raises(ValueError, match="patch size 3 is odd"):
        halve_patch({"x_embedder.proj.weight": torch.zeros(128, 3, 3, 3)}, channels=3)
