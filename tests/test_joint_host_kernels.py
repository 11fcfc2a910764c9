"""The joint-attention edit on ComfyUI's own attention kernels (real ComfyUI, in process, CPU).

The fused path hands the host's kernel query slices (text and image queries apart, for a re-weight)
and heads-first tensors that may be strided views (SD3's [B, N, H*D] viewed as [B, H, N, D], Z-Image's
movedim); every kernel ComfyUI may pick must take them with skip_reshape=True, and give the identity
edit bit for bit; the word maps go through the same kernel.
"""

import pytest
import torch

from p2p_core.attention import RowLayout
from p2p_core.joint import JointLayout, JointTerms, fused_joint_attention, reference_joint_attention
from p2p_core.joint_maps import image_text_maps, word_columns

HEADS, DIM, TEXT, IMAGE = 4, 16, 7, 40
KERNELS = ["attention_basic", "attention_split", "attention_sub_quad", "attention_pytorch", "optimized_attention"]
ROWS = RowLayout((3, 6), 2)


def projections(order: list[int], flat: bool) -> list[torch.Tensor]:
    """q, k, v [9, H, N, D] built from 5 random rows in `order`; `flat`: strided views of [9, N, H*D]."""
    g = torch.Generator().manual_seed(0)
    n = TEXT + IMAGE
    if flat:
        rows = [torch.randn(5, n, HEADS * DIM, generator=g) * 1.5 for _ in range(3)]
        return [t[order].view(len(order), n, HEADS, DIM).transpose(1, 2) for t in rows]
    return [torch.randn(5, HEADS, n, DIM, generator=g)[order] * 1.5 for _ in range(3)]


@pytest.mark.parametrize("flat", [False, True], ids=["heads-first", "SD3 view"])
@pytest.mark.parametrize("text_first", [True, False], ids=["txt-img", "img-txt"])
@pytest.mark.parametrize("kernel", KERNELS)
def test_joint_edit_on_the_host_kernels(comfy, kernel, text_first, flat):
    from comfy.ldm.modules import attention

    function = getattr(attention, kernel)

    def attend(q, k, v):
        return function(q, k, v, HEADS, skip_reshape=True)

    tokens = JointLayout(TEXT, IMAGE, text_first)
    # Identity: an unconditional chunk, then two chunks of a source and two copies of it.
    q, k, v = projections([0, 1, 2, 3, 3, 3, 4, 4, 4], flat)
    out = fused_joint_attention(q.clone(), k.clone(), v.clone(), attend, ROWS, tokens, JointTerms(True, None))
    for source, target, _ in ROWS.pairs():
        assert torch.equal(out[target], out[source])
    # A real edit with a re-weight (two kernel calls on query slices) against the explicit reference.
    q, k, v = projections([0, 1, 2, 3, 1, 2, 4, 0, 2], flat)
    scale = torch.ones(ROWS.targets, TEXT)
    scale[:, 2], scale[:, 4] = 2.0, -1.0
    terms = JointTerms(True, scale)
    fused = fused_joint_attention(q.clone(), k.clone(), v.clone(), attend, ROWS, tokens, terms)
    expected = reference_joint_attention(q, k, v, ROWS, tokens, terms)
    assert float((fused - expected).abs().max() / expected.abs().max()) < 1e-4
    # Word maps through the same kernel against the full softmax, sliced.
    maps = image_text_maps(q, k, attend, tokens, word_columns([[2], [4, 5]], TEXT))
    full = torch.softmax(q @ k.transpose(-1, -2) * DIM**-0.5, -1).mean(1)  # [B, N, N]
    full = full[:, tokens.image_slice][:, :, tokens.text_slice]
    sliced = torch.stack([full[..., 2], full[..., 4:6].sum(-1)], 1)
    assert float((maps - sliced).abs().max() / sliced.abs().max()) < 1e-4
