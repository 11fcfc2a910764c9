"""Train a demo model (`--model unet`, the default, or `--model dit`) on procedural scenes; resumes from its
last state.

    .venv/bin/python -m demo.train --steps 6000            # CPU, or the GPU when there is one
    .venv/bin/python -m demo.train --model dit --steps 6000

The shipped `demo/p2p_demo.safetensors` (the UNet) came from one run on an NVIDIA H200 (2904 steps in
5.5 minutes, EMA weights), with ComfyUI's `comfy/` tree copied beside the repo:

    python -m demo.train --steps 100000 --batch 512 --lr 8e-4 --minutes 5.5 --save-every 500

The shipped `demo/p2p_demo_dit.safetensors` (the DiT) came from ten runs on the 2-core CPU, often shared
with other jobs, and was grown twice (`demo.grow`, which keeps what the model computes). At patches of 4
with 3 joint blocks: the first run trained its own text encoder with it, 3300 steps at batch 16 in 68
minutes of one thread (loss 0.14), which drew the prompted backgrounds but hardly the objects. The others
continued its weights on the UNet demo's text encoder, frozen (the words are learned there already, and
the text encoder's backward pass and optimizer step were two thirds of the step time), at batch 32: 9700
steps at lr 1e-3 in 77 minutes of one thread (loss 0.17 at the switch, 0.080 at step 13000), then 7000 more
at lr 1e-3 in 36 minutes of two threads (a fresh optimizer; loss 0.075-0.080), each stopped by hand after
a save, with

    OMP_NUM_THREADS=2 .venv/bin/python -m demo.train --model dit --steps 1000000 --batch 32 --lr 1e-3 \
        --minutes 60 --save-every 1000 --frozen-text-encoder demo/p2p_demo.safetensors

then 5801 steps at lr 3e-4 from that run's state (the same command with `--lr 3e-4 --minutes 25`; loss
0.066 at step 25801). Its loss at low noise stayed 3x the UNet's, so it was grown to patches of 2
(`DIT_CONFIG` "patch_size": 2, "num_blocks": 3, then `python -m demo.grow demo/p2p_demo_dit.safetensors
demo/p2p_demo_dit.safetensors`) and trained 5199 steps at lr 1e-3 (the command above with `--minutes 55
--save-every 500`, stopped by hand after the step-31000 save; loss 0.060 against 0.066-0.080 at patches of
4 on the same batches' stream), then grown to 6 joint blocks (the shipped `DIT_CONFIG`, `demo.grow`
again) and trained 1923 steps at lr 1e-3 (`--minutes 30 --save-every 500`), then 652 at lr 3e-4 from that
run's state (`--lr 3e-4 --minutes 10`; loss 0.053-0.055 at step 33575), then 2320 more at lr 3e-4 from
those weights (a fresh optimizer, warmed up again; `--lr 3e-4 --minutes 55 --save-every 500`, its first 15
minutes beside the environment's set-up; loss 0.053-0.054 at step 35895), then 2347 more at lr 3e-4 from
that run's state (`--lr 3e-4 --minutes 50 --save-every 500`; loss 0.050-0.053) and 434 at lr 1e-4 from
that one's (`--lr 1e-4 --minutes 11`; loss 0.050 at step 38676), then 2336 more at lr 3e-4 from those weights
(a fresh optimizer, warmed up again; `--lr 3e-4 --minutes 45`; step 41012), then 2877 more at lr 3e-4 from
those (a fresh optimizer again; `--lr 3e-4 --minutes 55`; loss 0.048-0.052 at step 43889), then 2568 more at
lr 3e-4 from that run's state (`--lr 3e-4 --minutes 44`; loss 0.047-0.052 at step 46457), then 2738 at lr 1e-4
from that one's (`--lr 1e-4 --minutes 45`, the lower rate as an anneal; loss 0.044-0.046 at step 49195: shape
89.5 % against 85 %, every object right 82 % against 74 %), then 2770 at lr 7e-5 from that one's (`--lr 7e-5
--minutes 50`; loss 0.043-0.046 at step 51965, the shipped weights: shape 91 %, every object right 87 %).

That is still little training (1.61M samples; the UNet saw 1.5M): see benchmarks/results/quality_dit.txt
and `benchmarks.word_reliance` (at step 25801 the DiT's loss hardly depended on the shape word). A later session
continues it with the same command (and `--minutes` of its own): from `demo/train_state_dit.pt` where
that run's state is still there, else from the shipped weights (a fresh optimizer, warmed up again). On a
GPU a larger batch suits it, e.g. `--batch 256 --lr 8e-4`.

Seeded: the data of step `i` is drawn from seed `(seed, i)`, so a resumed run sees the same stream.
Resumes from `--state` (weights, EMA, optimizer) when it exists, else from the weights of `--out`
(which hold the EMA weights: a fresh optimizer then continues from them). Writes the EMA weights to
`--out` every `--save-every` steps, when `--minutes` run out, and at the end.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from devtools.comfy_host import ensure_comfy

from .scenes import sample_scenes

HERE = Path(__file__).resolve().parent


def flow_batch(images: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rectified-flow training triple from images `[B, 3, H, W]` in [0, 1].

    Returns x_sigma `[B, 3, H, W]`, sigma `[B]` (logit-normal, 20 % uniform) and the target
    `noise - x0` `[B, 3, H, W]`.
    """
    x0 = images * 2.0 - 1.0
    b = x0.shape[0]
    noise = torch.randn(x0.shape, generator=gen, device=x0.device)
    logit = torch.sigmoid(torch.randn(b, generator=gen, device=x0.device))
    uniform = torch.rand(b, generator=gen, device=x0.device)
    sigma = torch.where(torch.rand(b, generator=gen, device=x0.device) < 0.2, uniform, logit)
    s = sigma[:, None, None, None]
    return (1.0 - s) * x0 + s * noise, sigma, noise - x0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["unet", "dit"], default="unet",
                        help="the demo model to train: the UNet or the DiT (SD3-style MMDiT)")
    parser.add_argument("--steps", type=int, default=6000, help="total optimizer steps to reach")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="stop and save after this much wall time (0: no limit)")
    parser.add_argument("--save-every", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="the weights (default: the model's shipped checkpoint in demo/)")
    parser.add_argument("--state", type=Path,
                        help="the resumable state (default: demo/train_state.pt, demo/train_state_dit.pt)")
    parser.add_argument("--frozen-text-encoder", type=Path,
                        help="a demo checkpoint whose text encoder this model reads, frozen (not trained): "
                             "e.g. demo/p2p_demo.safetensors for the DiT")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    ensure_comfy()
    import comfy.sd1_clip

    from .model import (
        ARCHITECTURES,
        IMAGE_SIZE,
        build_text_encoder,
        caption_token_ids,
        encode_tokens,
        read_checkpoint,
        save_checkpoint,
        vocabulary_token_ids,
    )

    architecture = ARCHITECTURES[args.model]
    args.out = args.out or HERE / architecture.checkpoint
    args.state = args.state or HERE / ("train_state.pt" if args.model == "unet" else f"train_state_{args.model}.pt")
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    diffusion, te = architecture.build(device), build_text_encoder(device)
    tokenizer = comfy.sd1_clip.SD1Tokenizer()
    token_ids = vocabulary_token_ids(tokenizer)
    if args.frozen_text_encoder:
        te.clip_l.transformer.load_state_dict(read_checkpoint(args.frozen_text_encoder)[1])
        te.requires_grad_(False)
    params = [p for p in (*diffusion.parameters(), *te.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    step, seconds, opt_start = 0, 0.0, 0  # opt_start: the step the optimizer started at (lr warm-up)
    ema: dict[str, dict[str, torch.Tensor]] = {}
    if args.state.exists():
        state = torch.load(args.state, map_location=device)
        diffusion.load_state_dict(state["unet"])
        te.load_state_dict(state["te"])
        opt.load_state_dict(state["opt"])
        step, seconds, opt_start = state["step"], state["seconds"], state["opt_start"]
        ema = {"unet": state["ema_unet"], "te": state["ema_te"]}
        print(f"resumed from {args.state} at step {step}")
    elif args.out.exists():
        unet_sd, te_sd, meta = read_checkpoint(args.out)
        if meta["architecture"] != args.model:
            raise SystemExit(f"{args.out} holds the {meta['architecture']} demo model, not --model {args.model}")
        diffusion.load_state_dict(unet_sd)
        if not args.frozen_text_encoder:
            te.clip_l.transformer.load_state_dict(te_sd)
        step, seconds = meta["info"]["steps"], meta["info"]["train_seconds"]
        opt_start = step
        print(f"resumed from the weights of {args.out} at step {step} (fresh optimizer)")
    if not args.state.exists():
        ema = {"unet": copy.deepcopy(diffusion.state_dict()), "te": copy.deepcopy(te.state_dict())}
    # Pairs (EMA tensor, live tensor) of what is trained (a frozen text encoder's EMA is itself): state_dict()
    # values share storage with the parameters.
    live = {"unet": diffusion.state_dict()} | ({} if args.frozen_text_encoder else {"te": te.state_dict()})
    ema_pairs = [(ema[k][n], v) for k in live for n, v in live[k].items() if v.dtype.is_floating_point]
    start, base_seconds = time.time(), seconds

    words: dict[str, list[int]] = {}

    def tokens(caption: str) -> list[int]:
        """CLIP ids `[77]` of a caption, assembled from per-word ids (CLIP tokenizes word by word)."""
        ids = [49406]
        for word in caption.split():
            if word not in words:
                words[word] = [int(p[0]) for p in tokenizer.tokenize_with_weights(word)["l"][0][1:-1]
                               if p[0] != 49407]
            ids += words[word]
        return ids + [49407] * (77 - len(ids))

    # The fast paths must match ComfyUI's own tokenizer and text-encoding path exactly.
    probe_gen = torch.Generator(device=device).manual_seed(12345)
    probe = ["", "a red circle on a blue background", *sample_scenes(32, probe_gen, 32, device).captions]
    reference = [caption_token_ids(tokenizer, c) for c in probe]
    if [tokens(c) for c in probe] != reference:
        raise RuntimeError("per-word token assembly differs from comfy's SD1Tokenizer")
    with torch.no_grad():
        fast, fast_pooled = encode_tokens(te, torch.tensor(reference, device=device))
        slow, slow_pooled = te.clip_l(reference)[:2]
        if not (torch.allclose(fast, slow, atol=1e-5) and torch.allclose(fast_pooled, slow_pooled, atol=1e-5)):
            raise RuntimeError("encode_tokens() differs from comfy's SDClipModel.forward()")

    def save() -> None:
        unet_ema, te_ema = copy.deepcopy(diffusion), copy.deepcopy(te)
        unet_ema.load_state_dict(ema["unet"])
        te_ema.load_state_dict(ema["te"])
        seconds = base_seconds + time.time() - start
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        info = {"steps": step, "train_seconds": round(seconds, 1), "batch": args.batch, "lr": args.lr,
                "seed": args.seed, "device": name}
        if args.frozen_text_encoder:
            info["frozen_text_encoder"] = args.frozen_text_encoder.name
        save_checkpoint(args.out, args.model, unet_ema, te_ema, token_ids, info)
        torch.save({"unet": diffusion.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(), "step": step,
                    "opt_start": opt_start, "seconds": seconds, "ema_unet": ema["unet"], "ema_te": ema["te"]},
                   args.state)
        print(f"saved step {step} to {args.out}", flush=True)

    gen = torch.Generator(device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    diffusion.train()
    te.train(not args.frozen_text_encoder)
    last_log, losses = time.time(), []
    while step < args.steps:
        gen.manual_seed(args.seed * 1_000_003 + step)
        batch = sample_scenes(args.batch, gen, IMAGE_SIZE, device)
        drop = (torch.rand(args.batch, generator=gen, device=device) < 0.1).tolist()
        captions = ["" if d else c for d, c in zip(drop, batch.captions, strict=True)]
        x, sigma, target = flow_batch(batch.images, gen)
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1 - opt_start) / 500)
        with autocast:
            with torch.set_grad_enabled(not args.frozen_text_encoder):
                context, pooled = encode_tokens(te, torch.tensor([tokens(c) for c in captions], device=device))
            vector = {"y": pooled} if architecture.pooled else {}
            pred = diffusion(x, sigma * 1000.0, context=context, **vector)
            loss = torch.nn.functional.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_([e for e, _ in ema_pairs], [v for _, v in ema_pairs], 1.0 - decay)
        losses.append(loss.detach())
        now = time.time()
        if step % 100 == 0 or step == args.steps:
            mean = torch.stack(losses).mean().item()
            rate = len(losses) / (now - last_log)
            print(f"step {step} loss {mean:.4f} {rate:.2f} it/s elapsed {now - start:.0f}s", flush=True)
            last_log, losses = now, []
        out_of_time = args.minutes > 0 and now - start > args.minutes * 60
        if step % args.save_every == 0 or step == args.steps or out_of_time:
            save()
        if out_of_time:
            break


if __name__ == "__main__":
    main()
