"""Grow a trained demo DiT checkpoint into the larger DiT of `demo.model.DIT_CONFIG`, keeping what it computes,
to continue its training there: a finer patch (half the source's) and more joint blocks.

    .venv/bin/python -m demo.grow demo/p2p_demo_dit.safetensors demo/p2p_demo_dit.safetensors

Halving the patch `p`. Only the two layers that touch pixels depend on it; the joint blocks work on tokens
of the same width whatever area a token covers, and the image tokens' position embedding is the fixed
sin-cos grid spanning the image, so a token at the same place keeps its position. With `p' = p / 2`:

- patch embedding (a `p x p` convolution, weight `[D, C, p, p]`): each `p' x p'` kernel tap takes the sum
  of the `2 x 2` taps it covers, `W'[:, :, i, j] = sum_{a, b} W[:, :, 2i + a, 2j + b]`, so a flat patch
  embeds as before;
- final linear layer (weight `[p * p * C, D]`, outputs ordered `(row, column, channel)`): each output
  pixel of the finer patch is the mean of the `2 x 2` pixels it covers.

More blocks. The source's `n` joint blocks keep their order at positions `round(i (m - 1) / (n - 1))` of
the `m` new ones (the first stays first, the last, whose text stream is `pre_only`, stays last); the
blocks between are freshly initialised (`demo.model.init_weights`), so their adaLN modulation is zero:
each adds nothing to either stream (its gates are 0) until training opens it.

The other tensors are copied unchanged; the step count and training time of the source carry over.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from devtools.comfy_host import ensure_comfy


def halve_patch(state: dict[str, torch.Tensor], channels: int) -> dict[str, torch.Tensor]:
    """The state dict of the same DiT at half the patch size (see the module docstring).

    state: the MMDiT state dict at patch size `p` (even); channels: its output channels `C`.
    """
    out = dict(state)
    embed = state["x_embedder.proj.weight"]  # [D, C_in, p, p]
    d, c_in, p, _ = embed.shape
    if p % 2:
        raise ValueError(f"patch size {p} is odd: it cannot be halved")
    half = p // 2
    out["x_embedder.proj.weight"] = embed.reshape(d, c_in, half, 2, half, 2).sum((3, 5))
    for name in ("final_layer.linear.weight", "final_layer.linear.bias"):
        tensor = state[name]  # [p * p * C, D] or [p * p * C]
        rest = tensor.shape[1:]
        pixels = tensor.reshape(half, 2, half, 2, channels, *rest)
        out[name] = pixels.mean((1, 3)).reshape(half * half * channels, *rest)
    return out


def block_positions(source_blocks: int, blocks: int) -> list[int]:
    """Where each of `source_blocks` joint blocks goes among `blocks` (the first first, the last last)."""
    if not 2 <= source_blocks <= blocks:
        raise ValueError(f"cannot place {source_blocks} joint blocks among {blocks}")
    return [round(i * (blocks - 1) / (source_blocks - 1)) for i in range(source_blocks)]


def insert_blocks(state: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor],
                  source_blocks: int, blocks: int) -> dict[str, torch.Tensor]:
    """`fresh` (the state dict of a freshly initialised DiT of `blocks` joint blocks) with everything of
    `state` (a DiT of `source_blocks`) put in: its joint blocks at `block_positions`, the rest by name."""
    positions = block_positions(source_blocks, blocks)
    out = dict(fresh)
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "joint_blocks":
            parts[1] = str(positions[int(parts[1])])
        out[".".join(parts)] = tensor
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a demo DiT checkpoint")
    parser.add_argument("out", type=Path, help="where to write it grown to demo.model.DIT_CONFIG")
    args = parser.parse_args()

    ensure_comfy()
    import comfy.sd1_clip

    from .model import ARCHITECTURES, build_text_encoder, read_checkpoint, save_checkpoint, vocabulary_token_ids

    state, te_sd, meta = read_checkpoint(args.source)
    if meta["architecture"] != "dit":
        raise SystemExit(f"{args.source} holds the {meta['architecture']} demo model, not the DiT")
    source, config = meta["unet_config"], ARCHITECTURES["dit"].config
    if source["patch_size"] == 2 * config["patch_size"]:
        state = halve_patch(state, config["out_channels"])
    elif source["patch_size"] != config["patch_size"]:
        raise SystemExit(f"{args.source} has patches of {source['patch_size']}; DIT_CONFIG asks for "
                         f"{config['patch_size']}: neither the same nor half")
    dit = ARCHITECTURES["dit"].build("cpu")
    dit.load_state_dict(insert_blocks(state, dit.state_dict(), source["num_blocks"], config["num_blocks"]))
    te = build_text_encoder("cpu")
    te.clip_l.transformer.load_state_dict(te_sd)
    info = meta["info"] | {"grown_from": {"patch_size": source["patch_size"], "num_blocks": source["num_blocks"]}}
    save_checkpoint(args.out, "dit", dit, te, vocabulary_token_ids(comfy.sd1_clip.SD1Tokenizer()), info)
    print(f"wrote {args.out}: patches of {config['patch_size']}, {config['num_blocks']} joint blocks, from "
          f"{source['patch_size']} and {source['num_blocks']}; step {info['steps']}")


if __name__ == "__main__":
    main()
