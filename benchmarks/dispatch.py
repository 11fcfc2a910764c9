"""Host cost of an edit, measured on the CPU: the operations the patch dispatches, counted.

    python -m benchmarks.dispatch            # SD1.5 shapes (512 px: 64x64 latent), 1 target, cfg batch 4
                                             (from the repo root)

On a GPU at these batch sizes ComfyUI's forward is host-bound: what an edit costs is the number of
small operations it launches, not their arithmetic. Every aten operation a call dispatches is seen by a
`TorchDispatchMode` (`OpCounter`), on the CPU, which dispatches the same operations a GPU would launch.
Counted on the path the pack runs on CUDA (`AttentionPatch(cpu_query_chunks=False)`: one kernel call, not
the CPU's query chunks), with ComfyUI's `attention_pytorch` as the host kernel (the kernel ComfyUI runs
on CUDA):

  per call     one attention call through `host/unet.py`'s `AttentionPatch` at an SD1.5 layer's
               shapes (cross-attention: 64x64 layer, 320 channels, 77 keys; self-attention injection: the
               16x16 layer, 1280 channels, where the coarse default injects), after a first call of the
               same step (per-step terms are prepared then, and counted per forward), minus the plain call
               (`optimized_attention` alone, as the unpatched model calls it);
  per forward  one whole UNet forward (ComfyUI's `UNetModel`, the SD1.5 layout at base width 32 on a 32x32
               latent, which changes no operation count; a step not seen before, so that preparing the
               step's terms is inside) minus the
               plain forward of the same batch.

  per joint call  one joint-attention call of a diffusion transformer (Flux's layout: text tokens, then
               image tokens, q, k, v [B, H, N, D]): `p2p_core.joint.fused_joint_attention` on torch SDPA
               (the kernel of `benchmarks/joint_attention.py`), minus that kernel alone. The per-step terms
               (`JointTerms`) are built outside the call, once per step and block, as `host/joint.py` does;
               the override's own bookkeeping (reading the options, a few views) is not counted.

Operations are counted in two columns: every dispatched aten operation (views included: each is a host
round trip through the dispatcher) and those that are not views (on a GPU, the ones that launch a kernel
or allocate). Edit kinds: word swap, refine, re-weight alone (Reweight on an identity refine, as the node
builds it), self-attention injection, and a word swap with a local blend observing the layer.
"""

from __future__ import annotations

import argparse
import sys
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from devtools.comfy_host import put_comfy_on_path

from .report import table
from .unet_step import REFINES, SOURCE, STEPS, attention_patches, build_unet, import_pack, prompt

ROWS = 2
"""Source + 1 target; the cfg batch holds an unconditional and a conditional chunk of ROWS each."""


class OpCounter(TorchDispatchMode):
    """Counts every aten operation dispatched inside the `with` block, by name."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.views: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket).split(".")[-1]
        self.ops[name] += 1
        if func.is_view:
            self.views[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def kernels(self) -> int:
        """Operations that are not views."""
        return self.total - sum(self.views.values())


def count(fn: Callable[[], object]) -> OpCounter:
    with torch.inference_mode(), OpCounter() as counter:
        fn()
    return counter


@dataclass(frozen=True)
class Kind:
    name: str
    attention: str
    """attn1 or attn2: the call the edit acts on"""
    state: object
    """the EditState (host/state.py)"""
    factor: int = 1
    """the layer's downsampling against the latent (1: the 64x64 layer at 512 px; 4: the 16x16 one)"""


def split_word(tokens_module: types.ModuleType, tokens, word: str):
    """`tokens` (a PromptTokens) with `word` taking two context positions (as CLIP splits a rare word)."""
    index = tokens.words.index(word)
    at = tokens.word_positions(index)[0] + 1
    ids = (*tokens.token_ids[:at], tokens.token_ids[at - 1] + 1, *tokens.token_ids[at:-1])
    words = (*tokens.token_words[:at], index, *tokens.token_words[at:-1])
    return tokens_module.PromptTokens(tokens.text, tokens.words, ids, words)


def edit_kinds(pack: tuple[types.ModuleType, ...], recorder: type) -> list[Kind]:
    """The EditStates the edit nodes would build for each edit kind, every window covering the step."""
    _, host_state, plans, tokens = pack
    source = prompt(tokens, SOURCE)

    def prompts(target: str):
        return tokens.PromptSet(source, (prompt(tokens, target),))

    swap = prompts(SOURCE.replace("cat", "dog"))
    motorbike = split_word(tokens, prompt(tokens, SOURCE.replace("cat", "motorbike")), "motorbike")
    longer = tokens.PromptSet(source, (motorbike,))
    refine = prompts(REFINES[0])
    same = prompts(SOURCE)
    swap_plan = plans.replace_plan(swap, 1.0, 1.0)
    reweight_plan = plans.reweighted_plan(plans.refine_plan(same, 1.0, 1.0), same, "cat=2")
    return [
        Kind("word swap (cross)", "attn2", host_state.EditState(swap, swap_plan)),
        Kind(
            "word swap, 1 -> 2 tokens (cross)",
            "attn2",
            host_state.EditState(longer, plans.replace_plan(longer, 1.0, 1.0)),
        ),
        Kind("refine (cross)", "attn2", host_state.EditState(refine, plans.refine_plan(refine, 1.0, 1.0))),
        Kind("re-weight (cross)", "attn2", host_state.EditState(same, reweight_plan)),
        Kind("self-attention injection", "attn1", host_state.EditState(swap, swap_plan), 4),
        Kind(
            "word swap + local blend observation",
            "attn2",
            host_state.EditState(swap, swap_plan).with_observer(recorder(swap, 4)),
            4,
        ),
    ]


def step_options(sample_sigmas: torch.Tensor, step: int, batch: int, latent: int) -> dict:
    """transformer_options of one model call at `step`, as the sampler and UNet fill them."""
    return {
        "cond_or_uncond": [1, 0],
        "sigmas": sample_sigmas[step].expand(batch).clone(),
        "sample_sigmas": sample_sigmas,
        "original_shape": [batch, 4, latent, latent],
        "activations_shape": [batch, 4, latent, latent],
    }


def count_call(call: Callable, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args) -> OpCounter:
    """The operations of call(q, k, v, *args) on fresh copies (the patch writes into its inputs), the
    copies not counted."""
    copies = q.clone(), k.clone(), v.clone()
    counter = count(lambda: call(*copies, *args))
    counter.ops -= count(lambda: [t.clone() for t in copies]).ops
    return counter


def per_call(pack: tuple[types.ModuleType, ...], kinds: list[Kind], attend: Callable, latent: int) -> list[list]:
    """[kind, plain ops, extra ops, extra non-view ops, the extra ops by name] for one attention call."""
    host_unet, host_state = pack[:2]
    generator = torch.Generator().manual_seed(0)
    sample_sigmas = torch.linspace(14.6, 0.0, STEPS + 1)
    batch, heads = 2 * ROWS, 8
    rows = []
    for kind in kinds:
        side = latent // kind.factor
        channels = {1: 320, 2: 640, 4: 1280, 8: 1280}[kind.factor]
        keys = 77 if kind.attention == "attn2" else side * side
        q = torch.randn(batch, side * side, channels, generator=generator)
        k, v = (torch.randn(batch, keys, channels, generator=generator) for _ in range(2))
        options = step_options(sample_sigmas, 0, batch, latent)
        options.update(n_heads=heads, dim_head=channels // heads)
        edited = {**options, host_state.RUN_KEY: host_state.EditRun(kind.state)}
        patch = host_unet.AttentionPatch(kind.attention, cpu_query_chunks=False)
        count_call(patch, q, k, v, edited)  # the step's first call prepares the per-step terms
        base = count_call(partial(attend, heads=heads, transformer_options=options), q, k, v)
        ops = count_call(patch, q, k, v, edited)
        more, fewer = ops.ops - base.ops, base.ops - ops.ops
        rows.append(
            [
                kind.name,
                base.total,
                ops.total - base.total,
                ops.kernels - base.kernels,
                ", ".join(
                    [f"{name} +{n}" for name, n in sorted(more.items())]
                    + [f"{name} -{n}" for name, n in sorted(fewer.items())]
                ),
            ]
        )
    return rows


def per_forward(pack: tuple[types.ModuleType, ...], kinds: list[Kind], latent: int, width: int) -> list[list]:
    """[kind, plain ops, extra ops, extra non-view ops] for one whole SD1.5-layout UNet forward."""
    host_unet, host_state = pack[:2]
    unet = build_unet("SD15", torch.device("cpu"), torch.float32, width)
    patches = attention_patches(host_unet, unet)
    for by_key in patches.values():
        for patch in by_key.values():
            patch.cpu_query_chunks = False
    batch = 2 * ROWS
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 4, latent, latent, generator=generator)
    context = torch.randn(batch, 77, 768, generator=generator)
    timesteps = torch.full((batch,), 500.0)
    sample_sigmas = torch.linspace(14.6, 0.0, STEPS + 1)

    def forward(extra: dict, step: int) -> None:
        options = {**step_options(sample_sigmas, step, batch, latent), **extra}
        unet(x, timesteps, context, transformer_options=options)

    # Step 1: per_call saw step 0 only, so every edit prepares this step's terms inside the count.
    base = count(lambda: forward({}, 1))
    rows = []
    for kind in kinds:
        if kind.attention != "attn2":
            continue  # the same edit as the word swap's: every forward runs both attentions
        extra = {"patches_replace": patches, host_state.RUN_KEY: host_state.EditRun(kind.state)}
        ops = count(lambda extra=extra: forward(extra, 1))
        rows.append([kind.name, base.total, ops.total - base.total, ops.kernels - base.kernels])
    return rows


def per_joint_call(targets: int = 1) -> list[list]:
    """[edit, plain ops, extra ops, extra non-view ops, the extra ops by name] for one joint-attention call
    (the counts do not depend on the token counts or widths, so a small call stands for Flux's)."""
    from .joint_attention import EDITS, Shape, call

    shape = Shape("Flux layout", 64, 16, 4, 32)
    generator = torch.Generator().manual_seed(2)
    size = (1 + targets, shape.heads, shape.image + shape.text, shape.dim)
    q, k, v = (torch.randn(size, generator=generator) for _ in range(3))
    rows = []
    for edit in EDITS:
        base = count_call(call(shape, edit, "kernel", targets), q, k, v)
        ops = count_call(call(shape, edit, "fused", targets), q, k, v)
        more, fewer = ops.ops - base.ops, base.ops - ops.ops
        by_name = [f"{name} +{n}" for name, n in sorted(more.items())]
        by_name += [f"{name} -{n}" for name, n in sorted(fewer.items())]
        rows.append([edit, base.total, ops.total - base.total, ops.kernels - base.kernels, ", ".join(by_name)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latent", type=int, default=64, help="latent side (64: SD1.5 at 512 px)")
    parser.add_argument(
        "--forward-latent", type=int, default=32, help="latent side of the whole-forward count (no count depends on it)"
    )
    parser.add_argument("--width", type=int, default=32, help="UNet base width of the whole-forward count (idem)")
    parser.add_argument("--calls-only", action="store_true", help="skip the whole-forward count")
    opts = parser.parse_args()
    torch.set_num_threads(1)
    host = put_comfy_on_path(vendor=True)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    comfy.cli_args.args.use_pytorch_cross_attention = True  # the kernel ComfyUI picks on CUDA
    pack = import_pack()
    import comfy.ldm.modules.attention as comfy_attention
    from p2p_pack.p2p_core.maps import MapRecorder

    attend = comfy_attention.optimized_attention
    print(f"torch {torch.__version__}, ComfyUI from {host}, kernel {attend.__name__}", file=sys.stderr)
    kinds = edit_kinds(pack, MapRecorder)
    print(f"## Operations of one attention call, SD1.5 shapes ({opts.latent}x{opts.latent} latent), 1 target\n")
    print(
        table(
            ["edit kind", "plain call ops", "extra ops", "extra non-view ops", "extra ops by name"],
            per_call(pack, kinds, attend, opts.latent),
        )
    )
    print("\n## Operations of one joint-attention call (diffusion transformers, Flux layout), 1 target\n")
    print(
        table(
            ["edit", "plain call ops", "extra ops", "extra non-view ops", "extra ops by name"],
            per_joint_call(),
        )
    )
    if not opts.calls_only:
        print(
            "\n## Operations of one UNet forward, SD1.5 layout: the edit on 16 cross-attention layers, self-attention "
            "injection on the 6 coarse ones\n"
        )
        print(
            table(
                ["edit kind", "plain forward ops", "extra ops", "extra non-view ops"],
                per_forward(pack, kinds, opts.forward_latent, opts.width),
            )
        )


if __name__ == "__main__":
    main()
