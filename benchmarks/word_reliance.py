"""How much a demo model's denoising relies on each kind of caption word: its training loss (rectified flow,
`demo.train.flow_batch`'s target `noise - x0`) on the same noised scenes with the true captions, with every
shape word or every colour word moved to the next one of its list, and with no caption, at a few flow times.

    python -m benchmarks.word_reliance                      # both demo models, 256 scenes
    python -m benchmarks.word_reliance --model dit --scenes 512

A model that draws what a word says loses much more when that word is wrong: the ratio of the swapped loss
to the true one says how much the model reads the word, at the flow time where it decides it (the shape:
mid to high t). A ratio near 1 means the model ignores the word; the prompt-accuracy table of
`benchmarks.quality` then shows it drawing that attribute at chance. Direct torch on the checkpoint's
weights (no sampler, no ComfyUI graph): the scenes are `demo.scenes.sample_scenes(seed 7)`, the noise seed
3, the same for every caption and both models.
"""

from __future__ import annotations

import argparse

import torch

from demo.scenes import COLOUR_NAMES, SHAPES, sample_scenes
from devtools.comfy_host import REPO, ensure_comfy

from .report import ratio, table

TIMES = (0.9, 0.7, 0.5, 0.3)
"""Flow times t of `x_t = (1 - t) x0 + t noise` (t = 1: pure noise)."""


def swap_words(caption: str, words: tuple[str, ...]) -> str:
    """Every word of `caption` that is in `words` replaced by the next one of `words` (cyclic)."""
    return " ".join(words[(words.index(w) + 1) % len(words)] if w in words else w for w in caption.split())


def captions(true: list[str]) -> dict[str, list[str]]:
    """The caption variants the losses are measured on, by name."""
    return {"true": true, "shape swapped": [swap_words(c, SHAPES) for c in true],
            "colour swapped": [swap_words(c, COLOUR_NAMES) for c in true], "empty": [""] * len(true)}


@torch.no_grad()
def losses(model: str, scenes: int, times: tuple[float, ...] = TIMES) -> dict[float, dict[str, float]]:
    """{t: {caption variant: mean squared error of the velocity}} for demo model `model` ("unet" or "dit")."""
    ensure_comfy()
    import comfy.sd1_clip

    from demo.model import ARCHITECTURES, build_text_encoder, caption_token_ids, encode_tokens, read_checkpoint

    architecture = ARCHITECTURES[model]
    diffusion_sd, te_sd, _ = read_checkpoint(REPO / "demo" / architecture.checkpoint)
    net = architecture.build("cpu")
    net.load_state_dict(diffusion_sd)
    te = build_text_encoder("cpu")
    te.clip_l.transformer.load_state_dict(te_sd)
    net.eval()
    te.eval()
    tokenizer = comfy.sd1_clip.SD1Tokenizer()
    batch = sample_scenes(scenes, torch.Generator().manual_seed(7))
    x0 = batch.images * 2.0 - 1.0
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(3))
    encoded = {}
    for name, texts in captions(batch.captions).items():
        ids = torch.tensor([caption_token_ids(tokenizer, c) for c in texts])
        encoded[name] = encode_tokens(te, ids)
    out: dict[float, dict[str, float]] = {}
    for t in times:
        x_t = (1.0 - t) * x0 + t * noise
        timestep = torch.full((scenes,), 1000.0 * t)
        out[t] = {}
        for name, (context, pooled) in encoded.items():
            vector = {"y": pooled} if architecture.pooled else {}
            pred = net(x_t, timestep, context=context, **vector)
            out[t][name] = torch.nn.functional.mse_loss(pred, noise - x0).item()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=["unet", "dit"], default=["unet", "dit"])
    parser.add_argument("--scenes", type=int, default=256)
    opts = parser.parse_args()
    header = ["model", "t", "loss, true caption", "shape swapped", "colour swapped", "no caption"]
    rows = []
    for model in opts.model:
        for t, by in losses(model, opts.scenes).items():
            base = by["true"]
            swapped = [f"{by[k]:.4f} ({ratio(by[k], base)})" for k in ("shape swapped", "colour swapped", "empty")]
            rows.append([model, t, f"{base:.4f}", *swapped])
    print(f"Velocity MSE on {opts.scenes} scenes, the same noise for every caption; in brackets: against the true"
          " caption's\n")
    print(table(header, rows))


if __name__ == "__main__":
    main()
