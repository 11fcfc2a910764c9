"""The demo models' definitions: two diffusion models of ComfyUI's own classes, an SD-like UNet
(`UNetModel`) and an SD3-like diffusion transformer (`MMDiT`), each with a small CLIP text encoder on the
real CLIP tokenizer in its checkpoint (the DiT's is the UNet's, trained with the UNet and kept frozen for
the DiT: `demo.train --frozen-text-encoder`), and the one-file checkpoint format they share. Imports only
the light part of `comfy` (no `comfy.sd`), so the training script runs beside a bare copy of the `comfy/`
tree.

Latents are RGB pixels in [-1, 1] (`[B, 3, H, W]`, no downscale). Both are trained as a rectified
flow: `x_t = (1 - t) * x0 + t * noise`, the model gets timestep `1000 t` and predicts `noise - x0`, so
nothing needs clipping and t = 1 is pure noise (no colour leaks through the noisiest step). ComfyUI
sees it in the additive form of SD (`demo.loader.DemoFlowSampling`).

The DiT: 32x32 pixels in patches of 2 (16 x 16 = 256 image tokens) beside the 77 CLIP tokens in each joint
block, width 128 (MMDiT's width is 64 per head, 2 heads), 6 joint blocks, 2.8M parameters; the text
encoder's pooled output (the end token's features) is its vector input `y`, as SD3's CLIP pooled outputs
are. (It was first trained at patches of 4 with 3 blocks and grown into this: `demo.grow`.)
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import comfy.ops
import comfy.sd1_clip
import torch
from safetensors.torch import load_file, save_file

from .scenes import VOCABULARY

FORMAT = "p2p-demo-1"
IMAGE_SIZE = 32
# Attention (self + cross) only at the two coarser levels (16x16, 8x8 at 32 px) and the middle.
UNET_CONFIG: dict = {
    "image_size": IMAGE_SIZE,
    "in_channels": 3,
    "out_channels": 3,
    "model_channels": 64,
    "num_res_blocks": [1, 1, 1],
    "channel_mult": [1, 1, 2],
    "transformer_depth": [0, 1, 1],
    "transformer_depth_middle": 1,
    "transformer_depth_output": [0, 0, 1, 1, 1, 1],
    "context_dim": 128,
    "num_heads": -1,
    "num_head_channels": 32,
    "use_spatial_transformer": True,
    "use_linear_in_transformer": True,
    "legacy": False,
    "use_checkpoint": False,
    "adm_in_channels": None,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
# MMDiT's width is 64 * depth with `depth` heads; `num_blocks` joint blocks (the last one's text side pre-only).
DIT_CONFIG: dict = {
    "input_size": IMAGE_SIZE,
    "patch_size": 2,
    "in_channels": 3,
    "out_channels": 3,
    "depth": 2,
    "num_blocks": 6,
    "mlp_ratio": 2.0,
    "adm_in_channels": 128,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 128, "out_features": 128}},
    "qk_norm": "rms",
}
# Overrides of ComfyUI's CLIP-L text config (sd1_clip_config.json); the vocabulary stays CLIP's.
TEXT_CONFIG: dict = {
    "hidden_size": 128,
    "intermediate_size": 512,
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "projection_dim": 128,
}
SAMPLING: dict = {"shift": 1.0, "multiplier": 1000}  # flow time: no shift; UNet timestep = 1000 t
TOKEN_KEY = "text_model.embeddings.token_embedding.weight"


def init_weights(module: torch.nn.Module) -> None:
    """Initialise a model built from `comfy.ops` layers (they skip `reset_parameters`).

    Torch's default init everywhere, embeddings at std 0.02, MMDiT's q/k RMS norms at 1, and the last
    layer of every residual branch at zero (UNet: ResBlock out conv, transformer proj_out, output conv;
    DiT: every adaLN modulation, so each block starts as the identity, and the final linear layer).
    """
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Embedding):
            torch.nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm)):
            _reset(m)
        if name.endswith(("ln_q", "ln_k")):
            torch.nn.init.ones_(m.weight)
        zero_dit = name.endswith("adaLN_modulation.1") or name == "final_layer.linear"
        if name.endswith(("out_layers.3", "proj_out")) or name == "out.2" or zero_dit:
            torch.nn.init.zeros_(m.weight)
            torch.nn.init.zeros_(m.bias)
    for name, p in module.named_parameters():
        if name.endswith("position_embedding.weight"):
            torch.nn.init.normal_(p, std=0.01)


def _reset(m: torch.nn.Module) -> None:
    """Call the torch base class's `reset_parameters` that the `comfy.ops` subclass disabled."""
    for base in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.GroupNorm, torch.nn.LayerNorm):
        if isinstance(m, base):
            base.reset_parameters(m)
            return


def build_unet(device: torch.device | str = "cpu") -> torch.nn.Module:
    """A freshly initialised demo UNet (ComfyUI `UNetModel`, fp32) for training."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    unet = UNetModel(**UNET_CONFIG, dtype=torch.float32, device=device,
                     operations=comfy.ops.disable_weight_init)
    init_weights(unet)
    return unet


def build_dit(device: torch.device | str = "cpu", **overrides: object) -> torch.nn.Module:
    """A freshly initialised demo DiT (ComfyUI's SD3 `MMDiT` in the signature `comfy.model_base.SD3` uses, fp32)
    of `DIT_CONFIG` with `overrides` (e.g. `num_blocks`: the smaller DiTs `demo.grow` grows from)."""
    from comfy.ldm.modules.diffusionmodules.mmdit import OpenAISignatureMMDITWrapper

    dit = OpenAISignatureMMDITWrapper(**(DIT_CONFIG | overrides), dtype=torch.float32, device=device,
                                      operations=comfy.ops.disable_weight_init)
    init_weights(dit)
    return dit


class Architecture(NamedTuple):
    """One demo diffusion model: its config, its builder and how it takes the text."""

    config: dict
    build: Callable[[torch.device | str], torch.nn.Module]
    pooled: bool
    """Whether the model takes the text encoder's pooled output as its vector input `y` `[B, 128]`."""
    checkpoint: str
    """The file name of its shipped weights in `demo/`."""


ARCHITECTURES: dict[str, Architecture] = {
    "unet": Architecture(UNET_CONFIG, build_unet, False, "p2p_demo.safetensors"),
    "dit": Architecture(DIT_CONFIG, build_dit, True, "p2p_demo_dit.safetensors"),
}
"""The demo models by the name their checkpoints record (`architecture`; a checkpoint without it is a UNet)."""


def build_text_encoder(device: torch.device | str = "cpu") -> comfy.sd1_clip.SD1ClipModel:
    """A freshly initialised, trainable text encoder: ComfyUI's SD1 CLIP wrapper on the small config."""
    te = comfy.sd1_clip.SD1ClipModel(device=device, dtype=torch.float32, model_options={
        "clip_l_model_config": TEXT_CONFIG, "custom_operations": comfy.ops.disable_weight_init})
    init_weights(te)
    te.requires_grad_(True)
    for layer in te.clip_l.transformer.text_model.encoder.layers:
        layer.forward = types.MethodType(_clip_layer_forward, layer)
    return te


def encode_tokens(te: comfy.sd1_clip.SD1ClipModel, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched text encoding for training: what `SDClipModel.forward` computes for plain token ids
    (last layer, final layer norm, no attention mask). tokens: `[B, 77]` long; returns the token features
    `[B, 77, D]` and the pooled output `[B, D]` (the end token's features; SD1's CLIP-L pools unprojected)."""
    transformer = te.clip_l.transformer
    embeds = transformer.get_input_embeddings()(tokens, out_dtype=torch.float32)
    num_tokens = ((tokens == te.clip_l.special_tokens["end"]).int().argmax(-1) + 1).tolist()
    outputs = transformer(None, None, embeds=embeds, num_tokens=num_tokens, intermediate_output=None,
                          final_layer_norm_intermediate=True, dtype=torch.float32)
    return outputs[0].float(), outputs[3].float()


def _clip_layer_forward(self: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor | None = None,
                        optimized_attention: Callable | None = None) -> torch.Tensor:
    """`comfy.clip_model.CLIPLayer.forward` without its in-place residual adds, which autograd rejects.

    x: `[B, T, D]`; the same arithmetic as the original, so trained weights behave identically in ComfyUI.
    """
    x = x + self.self_attn(self.layer_norm1(x), mask, optimized_attention)
    return x + self.mlp(self.layer_norm2(x))


def caption_token_ids(tokenizer: comfy.sd1_clip.SD1Tokenizer, caption: str) -> list[int]:
    """The 77 CLIP ids ComfyUI's SD1 tokenizer gives a caption: start, the words' ids, end padding."""
    return [int(pair[0]) for pair in tokenizer.tokenize_with_weights(caption)["l"][0]]


def vocabulary_token_ids(tokenizer: comfy.sd1_clip.SD1Tokenizer) -> list[int]:
    """CLIP token ids of every word the scene captions use, plus start/end."""
    ids = {49406, 49407}
    for word in VOCABULARY:
        for pair in tokenizer.tokenize_with_weights(word)["l"][0]:
            ids.add(int(pair[0]))
    return sorted(ids)


def save_checkpoint(path: Path, architecture: str, model: torch.nn.Module, text_encoder: torch.nn.Module,
                    token_ids: list[int], info: dict) -> None:
    """Write the one-file demo checkpoint of the diffusion model `model` of `ARCHITECTURES[architecture]`.

    Keys: `unet.*` (the diffusion model's state dict: ComfyUI's name for it, whatever its class),
    `te.*` (CLIPTextModel state dict without the token table), `te_tokens.ids` `[N]` and
    `te_tokens.rows` `[N, D]` (the embedding rows of the caption vocabulary; the loader leaves every
    other token at zero). Metadata holds the architecture, the configs and `info`.
    """
    tensors = {f"unet.{k}": v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    te_sd = text_encoder.clip_l.transformer.state_dict()
    table = te_sd.pop(TOKEN_KEY)
    tensors.update({f"te.{k}": v.detach().float().cpu().contiguous() for k, v in te_sd.items()})
    ids = torch.tensor(token_ids, dtype=torch.long)
    tensors["te_tokens.ids"] = ids
    tensors["te_tokens.rows"] = table.detach().float().cpu()[ids].contiguous()
    meta = {"format": FORMAT, "architecture": json.dumps(architecture),
            "unet_config": json.dumps(ARCHITECTURES[architecture].config), "text_config": json.dumps(TEXT_CONFIG),
            "sampling": json.dumps(SAMPLING), "info": json.dumps(info)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Read a demo checkpoint: (diffusion model state dict, full CLIPTextModel state dict, metadata with parsed
    JSON; `architecture` "unet" where the checkpoint predates the field)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw_meta = f.metadata() or {}
    if raw_meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a Prompt-to-Prompt demo checkpoint "
                         f"(format {raw_meta.get('format')!r}, expected {FORMAT!r})")
    meta = {"architecture": "unet"} | {k: json.loads(v) for k, v in raw_meta.items() if k != "format"}
    sd = load_file(str(path))
    unet_sd = {k[5:]: v for k, v in sd.items() if k.startswith("unet.")}
    te_sd = {k[3:]: v for k, v in sd.items() if k.startswith("te.")}
    rows = sd["te_tokens.rows"]
    table = torch.zeros(49408, rows.shape[1], dtype=rows.dtype)
    table[sd["te_tokens.ids"]] = rows
    te_sd[TOKEN_KEY] = table
    return unet_sd, te_sd, meta
