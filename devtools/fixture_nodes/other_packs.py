"""Stand-ins for other packs that patch attention, as the tests compose them with the pack.

Each behaves like a real one where composition can go wrong: its effect depends on the shapes it is given
(`extra_tokens`: a fixed set of extra key/value tokens for the width of the call, as an image prompt
adapter adds), it works per chunk of the batch as `cond_or_uncond` names them (the extra term on the
conditional chunks only, as IPAdapter does), and it asserts that the options it is given describe the
batch it is given (`check_batch`). Every call is counted in CALLS, by stand-in.

- `P2PTestOtherAttn2Replace`: an `attn2` replace patch on every cross-attention block, keyed per block
  `("input", id)` (as IPAdapter_plus on SD1.5) or per transformer `("input", id, index)`;
- `P2PTestOtherPatchObject`: an IPAdapter-style patch object per transformer: a second node finds its
  own object under the key and updates it in place (`.add`);
- `P2PTestOtherInputPatch`: an `attn1_patch` / `attn2_patch` (before the projections) shifting the
  values of the conditional chunks;
- `P2PTestOtherAttentionOverride`: an `optimized_attention_override` that wraps the previous one (as
  sage / sparse attention nodes do) and sharpens the conditional chunks' attention;
- `P2PTestOtherDitReplace`: a `patches_replace["dit"]` replace on every SD3 joint block ("double_block", i)
  that runs the block and shifts the conditional chunks' image tokens along a fixed direction (as block-level
  packs change a block's output);
- `P2PTestDropAttentionPatches`: a UNet function wrapper that runs the UNet without the `attn1` and/or
  `attn2` replace patches, or a joint-attention model without the attention override (`joint`) (a pack,
  host or sampler path that bypasses the hooks).
"""

from __future__ import annotations

from collections import Counter
from functools import cache

import torch
from comfy.ldm.modules.attention import optimized_attention
from comfy_api.latest import io

from .schemas import model_patch_schema

CALLS: Counter = Counter()
"""Calls of each stand-in's patch, by stand-in name."""


@cache
def extra_tokens(width: int) -> torch.Tensor:
    """[4, width]: the extra key/value tokens of a call whose projections are `width` wide (fixed per width)."""
    return torch.randn((4, width), generator=torch.Generator().manual_seed(width))


def check_batch(rows: int, options: dict) -> list[int]:
    """`cond_or_uncond` of a call of `rows` rows, after asserting that the options describe that batch."""
    chunks = options["cond_or_uncond"]
    assert rows % len(chunks) == 0, f"{rows} rows are not chunks of cond_or_uncond {chunks}"
    for shape in ("activations_shape", "original_shape"):
        if shape in options:
            assert options[shape][0] == rows, f"{shape} {options[shape]} does not describe a batch of {rows}"
    return chunks


def conditional_rows(rows: int, chunks: list[int]) -> torch.Tensor:
    """[rows] bool: the rows of the conditional chunks (cond_or_uncond 0)."""
    per_chunk = rows // len(chunks)
    return torch.tensor([kind == 0 for kind in chunks for _ in range(per_chunk)])


def adapter_term(q: torch.Tensor, options: dict, strength: float) -> torch.Tensor:
    """strength * softmax(q E^T / sqrt(D)) E on the conditional chunks, 0 on the others: [B, Nq, H*D]."""
    chunks = check_batch(q.shape[0], options)
    tokens = extra_tokens(q.shape[-1]).to(q)[None].expand(q.shape[0], -1, -1)
    term = optimized_attention(q, tokens, tokens, options["n_heads"]) * strength
    return term * conditional_rows(q.shape[0], chunks).to(q)[:, None, None]


class AdapterPatch:
    """An attn2 replace patch object holding the strengths of the adapters applied so far (IPAdapter style)."""

    def __init__(self, strength: float) -> None:
        self.strengths = [strength]

    def add(self, strength: float) -> None:
        """Another adapter on the same patch, added in place by a later node."""
        self.strengths.append(strength)

    def __call__(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, options: dict) -> torch.Tensor:
        CALLS["object"] += 1
        out = optimized_attention(q, k, v, options["n_heads"])
        for strength in self.strengths:
            out = out + adapter_term(q, options, strength)
        return out


def cross_attention_blocks(model) -> list[tuple[str, int, int]]:
    """(block, id, transformer index) of every transformer block of the model's UNet, as the pack finds them."""
    from devtools import harness

    return harness.pack("host.unet").transformer_blocks(model)


class OtherAttn2Replace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema(
            "P2PTestOtherAttn2Replace",
            io.Combo.Input("key", options=["block", "transformer"]),
            io.Float.Input("strength", default=1.0),
        )

    @classmethod
    def execute(cls, model, key: str, strength: float) -> io.NodeOutput:
        def adapter_attention(q, k, v, options):
            CALLS[f"attn2 {key}"] += 1
            return optimized_attention(q, k, v, options["n_heads"]) + adapter_term(q, options, strength)

        patched = model.clone()
        for block, number, index in cross_attention_blocks(model):
            patched.set_model_attn2_replace(adapter_attention, block, number, index if key == "transformer" else None)
        return io.NodeOutput(patched)


class OtherPatchObject(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema("P2PTestOtherPatchObject", io.Float.Input("strength", default=1.0))

    @classmethod
    def execute(cls, model, strength: float) -> io.NodeOutput:
        patched = model.clone()
        replaces = (
            patched.model_options["transformer_options"].setdefault("patches_replace", {}).setdefault("attn2", {})
        )
        for key in cross_attention_blocks(model):
            if key in replaces:  # IPAdapter_plus: its own object is under the key, update it in place
                replaces[key].add(strength)
            else:
                replaces[key] = AdapterPatch(strength)
        return io.NodeOutput(patched)


class OtherInputPatch(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema(
            "P2PTestOtherInputPatch",
            io.Combo.Input("kind", options=["attn1_patch", "attn2_patch"]),
            io.Float.Input("strength", default=1.0),
        )

    @classmethod
    def execute(cls, model, kind: str, strength: float) -> io.NodeOutput:
        def shift_values(n, context, value, options):
            CALLS[kind] += 1
            chunks = check_batch(n.shape[0], options)
            assert context.shape[0] == value.shape[0] == n.shape[0]
            shift = extra_tokens(value.shape[-1])[0].to(value) * strength
            return n, context, value + shift * conditional_rows(n.shape[0], chunks).to(value)[:, None, None]

        patched = model.clone()
        patched.set_model_patch(shift_values, kind)
        return io.NodeOutput(patched)


class OtherAttentionOverride(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema("P2PTestOtherAttentionOverride", io.Float.Input("sharpen", default=1.5))

    @classmethod
    def execute(cls, model, sharpen: float) -> io.NodeOutput:
        patched = model.clone()
        options = patched.model_options["transformer_options"]
        previous = options.get("optimized_attention_override")

        def sharpened_attention(func, q, k, v, heads, *args, **kwargs):
            CALLS["override"] += 1
            tokens = 2 if kwargs.get("skip_reshape", False) else 1
            CALLS[("override", q.shape[tokens], k.shape[tokens])] += 1  # the call's query and key token counts
            chunks = check_batch(q.shape[0], kwargs["transformer_options"])
            scale = 1 + (sharpen - 1) * conditional_rows(q.shape[0], chunks).to(q)
            q = q * scale.reshape(-1, *(1,) * (q.ndim - 1))
            if previous is not None:
                return previous(func, q, k, v, heads, *args, **kwargs)
            return func(q, k, v, heads, *args, **kwargs)

        options["optimized_attention_override"] = sharpened_attention
        return io.NodeOutput(patched)


class OtherDitReplace(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema("P2PTestOtherDitReplace", io.Float.Input("shift", default=0.1))

    @classmethod
    def execute(cls, model, shift: float) -> io.NodeOutput:
        def shifted_block(args: dict, extra: dict) -> dict:
            CALLS["dit"] += 1
            out = extra["original_block"](args)
            chunks = check_batch(out["img"].shape[0], args["transformer_options"])
            rows = conditional_rows(out["img"].shape[0], chunks).to(out["img"])
            direction = extra_tokens(out["img"].shape[-1])[0].to(out["img"])  # not a constant: LayerNorm removes one
            out["img"] = out["img"] + shift * rows[:, None, None] * direction
            return out

        patched = model.clone()
        for index in range(len(model.model.diffusion_model.joint_blocks)):
            patched.set_model_patch_replace(shifted_block, "dit", "double_block", index)
        return io.NodeOutput(patched)


class DropAttentionPatches(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema(
            "P2PTestDropAttentionPatches", io.Combo.Input("kinds", options=["attn1, attn2", "attn2", "joint"])
        )

    @classmethod
    def execute(cls, model, kinds: str) -> io.NodeOutput:
        dropped = kinds.split(", ")

        def without_patches(apply_model, args: dict) -> torch.Tensor:
            CALLS["drop"] += 1
            conditioning = dict(args["c"])
            options = dict(conditioning.get("transformer_options", {}))
            replaces = options.get("patches_replace", {})
            options["patches_replace"] = {kind: found for kind, found in replaces.items() if kind not in dropped}
            if "joint" in dropped:
                options.pop("optimized_attention_override", None)
            conditioning["transformer_options"] = options
            return apply_model(args["input"], args["timestep"], **conditioning)

        patched = model.clone()
        patched.set_model_unet_function_wrapper(without_patches)
        return io.NodeOutput(patched)


NODES = [
    OtherAttn2Replace,
    OtherPatchObject,
    OtherInputPatch,
    OtherAttentionOverride,
    OtherDitReplace,
    DropAttentionPatches,
]
