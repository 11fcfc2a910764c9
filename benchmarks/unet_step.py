"""What an edit costs inside one whole UNet forward: ComfyUI's own UNet, real shapes, side by side.

    python3 -m benchmarks.unet_step --device cuda                 # SD1.5 at 512 px and SDXL at 1024 px, fp16
    python3 -m benchmarks.unet_step --device cpu --small          # SD1.5 layout at a 16x16 latent, fp32

One forward of `comfy.ldm.modules.diffusionmodules.openaimodel.UNetModel` (the SD1.5 and SDXL
layouts, recognised by `comfy.supported_models`; random weights) on a cfg batch of 2(1+N) rows
(uncond chunk then cond chunk, each a source and N targets), three ways, alternated in one
process (order reversed every round, after warm-up rounds):

  plain      no patches (the same batch sampled without an edit);
  edit       the pack's `AttentionPatch` (host/unet.py) as attn1 and attn2 replace patch on every
             transformer block, an `EditState` with a real PromptSet and plan (p2p_core/plans.py) in
             an `EditRun` of it in `transformer_options["p2p_edit_run"]` (as the edit's outer-sample wrapper
             puts it there for a run), every window covering the step;
  reference  the same with `reference=True` (explicit-softmax maps, as `with_reference_attention`).

Every call gets its own sigma on a 50-step schedule, cycling through the steps, so the per-step work
of a real sampler (the step lookup, the plan's terms for the step) is inside the figure.
Time: CUDA events around the call (median); on the CPU, wall time. Memory: on CUDA
`torch.cuda.max_memory_allocated` over the memory allocated before the call (inputs and weights
excluded); on the CPU the resident-set high-water mark over the resident set before the call.

Imports: ComfyUI's `comfy` package comes from `.vendor/` when that folder exists (a copy of ComfyUI's
`comfy/` plus the pure-python torchsde, trampoline and einops; `.vendor/fallback` stubs last on the
path), else from the ComfyUI host of devtools.comfy_host (`put_comfy_on_path`). Of the pack only
`host/unet.py`, `host/state.py` and `p2p_core/` are imported, and of devtools only the plain dicts of
`devtools/unet_layouts.py` and the standard-library `comfy_host.py`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import statistics
import sys
import time
import types
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace

import torch

from devtools.comfy_host import REPO, put_comfy_on_path
from devtools.unet_layouts import SD15, SDXL, UNET_COMMON

from .perf import PeakMeter
from .report import ratio, table

PACKAGE = "p2p_pack"
"""The name the pack is imported under here (ComfyUI imports it under its folder's name)."""
MB = 2**20
STEPS = 50
START, END = 49406, 49407
"""CLIP's start and end/padding token ids."""


def import_pack() -> tuple[types.ModuleType, types.ModuleType, types.ModuleType, types.ModuleType]:
    """(host.unet, host.state, p2p_core.plans, p2p_core.tokens) of this repo.

    The repo is loaded as the package PACKAGE, as ComfyUI loads a custom node folder; its `__init__.py`
    imports nothing of ComfyUI, and the UNet glue (`host/`) imports no node, so neither `comfy_api`, the
    server nor PIL (none of which a bare GPU machine has or this benchmark needs) is imported.
    """
    if PACKAGE not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            PACKAGE, REPO / "__init__.py", submodule_search_locations=[str(REPO)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules[PACKAGE] = package
        spec.loader.exec_module(package)
    return tuple(
        importlib.import_module(f"{PACKAGE}.{name}")
        for name in ("host.unet", "host.state", "p2p_core.plans", "p2p_core.tokens")
    )


# ----------------------------------------------------------------------------------------------
# Models

LAYOUTS = {"SD15": SD15, "SDXL": SDXL}
"""The architecture keys of each UNet (`devtools/unet_layouts.py`, shared with the real-shape test checkpoints);
`comfy.supported_models.<name>` must recognise them and adds its own (heads, head channels)."""


def build_unet(
    name: str, device: torch.device, dtype: torch.dtype, channels: int = 320, seed: int = 0
) -> torch.nn.Module:
    """ComfyUI's UNetModel with the `comfy.supported_models.<name>` config, small random normal weights.

    channels: the base width (320 in SD1.5 and SDXL); a smaller one keeps the layout (blocks, depths,
    heads, context) at a fraction of the weights, for a quick check on the CPU."""
    import comfy.ops
    import comfy.supported_models
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    family = getattr(comfy.supported_models, name)
    config = {**UNET_COMMON, **LAYOUTS[name]}
    if not family.matches(config):
        raise RuntimeError(f"comfy.supported_models.{name} does not recognise the layout {config}")
    unet_config = {**family(config).unet_config, "model_channels": channels}
    unet = UNetModel(**unet_config, dtype=dtype, device=device, operations=comfy.ops.disable_weight_init)
    # ComfyUI's ops skip initialisation (weights come from a checkpoint): give every weight a value.
    generator = torch.Generator(device).manual_seed(seed)
    with torch.no_grad():
        for param_name, param in unet.named_parameters():
            if "norm" in param_name:
                param.fill_(1.0 if param_name.endswith("weight") else 0.0)
            elif param_name.endswith("bias"):
                param.zero_()
            else:
                param.normal_(0.0, 0.02, generator=generator)
    return unet.eval()


# ----------------------------------------------------------------------------------------------
# Prompts and edits


def prompt(tokens_module: types.ModuleType, text: str, length: int = 77):
    """A PromptTokens laid out as CLIP lays out a one-chunk prompt (start, one token per word, end and
    padding), with ids derived from the words, so that no tokenizer is needed."""
    words = tuple(text.split())
    ids = (START, *(1000 + zlib.crc32(w.encode()) % 40000 for w in words)) + (END,) * (length - 1 - len(words))
    word_of = (-1, *range(len(words))) + (-1,) * (length - 1 - len(words))
    return tokens_module.PromptTokens(text, words, ids, word_of)


SOURCE = "a photo of a cat riding a bicycle on a street"
SWAPS = ("dog", "fox", "lion", "tiger")
REFINES = (
    "a watercolor photo of a cat riding a red bicycle on a street",
    "a photo of a fluffy cat riding a bicycle on a wet street",
    "a photo of a cat riding a bicycle on a street at night",
    "an old photo of a cat riding a bicycle on a snowy street",
)


@dataclass(frozen=True)
class Edit:
    kind: str
    """replace or refine"""
    targets: int
    self_layers: str
    """an id of p2p_core.plans.SELF_LAYERS (the node's choices): coarse, medium or all"""

    @property
    def label(self) -> str:
        return f"{self.kind}, self {self.self_layers}"


def edit_state(pack: tuple[types.ModuleType, ...], edit: Edit):
    """The EditState the pack's edit nodes would put on the model for `edit`."""
    _, state, plans, tokens = pack
    if edit.kind == "replace":
        texts = [SOURCE.replace("cat", word) for word in SWAPS[: edit.targets]]
        build = plans.replace_plan
    else:
        texts = list(REFINES[: edit.targets])
        build = plans.refine_plan
    prompts = tokens.PromptSet(prompt(tokens, SOURCE), tuple(prompt(tokens, t) for t in texts))
    plan = build(prompts, 1.0, 1.0, "", edit.self_layers)
    return state.EditState(prompts, plan)


def attention_patches(host_unet: types.ModuleType, unet: torch.nn.Module) -> dict:
    """`patches_replace` with an AttentionPatch as attn1 and attn2 of every transformer block (as the edit's
    outer-sample wrapper puts them on a run)."""
    keys = host_unet.transformer_blocks(SimpleNamespace(model=SimpleNamespace(diffusion_model=unet)))
    return {kind: {key: host_unet.AttentionPatch(kind) for key in keys} for kind in host_unet.KINDS}


# ----------------------------------------------------------------------------------------------
# Measurement


@dataclass
class Inputs:
    x: torch.Tensor
    context: torch.Tensor
    y: torch.Tensor | None
    sample_sigmas: torch.Tensor
    call: int = 0

    def options(self, extra: dict) -> dict:
        """Fresh transformer_options for one model call, as the sampler fills them (cond_or_uncond, sigmas)."""
        step = self.call % STEPS
        self.call += 1
        sigma = self.sample_sigmas[step].expand(self.x.shape[0]).clone()
        return {"cond_or_uncond": [1, 0], "sigmas": sigma, "sample_sigmas": self.sample_sigmas, **extra}


def make_inputs(name: str, rows: int, latent: int, device: torch.device, dtype: torch.dtype) -> Inputs:
    """Random latents, text context and (SDXL) pooled/size vector for a cfg batch of 2 * `rows`."""
    layout = LAYOUTS[name]
    generator = torch.Generator(device).manual_seed(1)
    batch = 2 * rows

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=device, dtype=dtype)

    x = randn(batch, 4, latent, latent)
    context = randn(batch, 77, layout["context_dim"])
    y = None if layout["adm_in_channels"] is None else randn(batch, layout["adm_in_channels"])
    sample_sigmas = torch.linspace(14.6, 0.0, STEPS + 1, device=device)
    return Inputs(x, context, y, sample_sigmas)


def measure(fn: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, int, torch.Tensor]:
    """(milliseconds, peak bytes above the start, output) of one call."""
    meter = PeakMeter(device)
    meter.start()
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(device)
        ms = begin.elapsed_time(end)
    else:
        t0 = time.perf_counter()
        out = fn()
        ms = (time.perf_counter() - t0) * 1000
    return ms, meter.peak(), out


@dataclass
class Result:
    ms: list[float]
    peak: int = 0
    out: torch.Tensor | None = None


def run_group(
    unet: torch.nn.Module,
    inputs: Inputs,
    configs: dict[str, dict],
    device: torch.device,
    repeats: int,
    warmup: int,
) -> dict[str, Result]:
    """Every configuration (name -> extra transformer_options) called in turn, order reversed each round."""
    results = {name: Result([]) for name in configs}
    names = list(configs)
    for round_ in range(warmup + repeats):
        for name in names if round_ % 2 == 0 else reversed(names):

            def call(extra: dict = configs[name]) -> torch.Tensor:
                return unet(
                    inputs.x, timesteps(inputs), inputs.context, inputs.y, transformer_options=inputs.options(extra)
                )

            with torch.inference_mode():
                ms, peak, out = measure(call, device)
            if round_ >= warmup:
                result = results[name]
                result.ms.append(ms)
                result.peak = max(result.peak, peak)
                result.out = out.float().cpu()
            del out
    return results


def timesteps(inputs: Inputs) -> torch.Tensor:
    return torch.full((inputs.x.shape[0],), 500.0, device=inputs.x.device, dtype=inputs.x.dtype)


# ----------------------------------------------------------------------------------------------
# The table


HEADER = [
    "model",
    "latent",
    "edit",
    "targets",
    "plain ms",
    "edit ms",
    "edit/plain time",
    "reference ms",
    "plain MB",
    "edit MB",
    "edit/plain memory",
    "reference/edit memory",
    "unedited rows vs plain",
    "edited rows vs plain",
    "edit vs reference",
]


def rows_for(model: str, latent: int, edits: list[Edit], results: dict[str, Result], targets: int) -> list[list[str]]:
    plain = results["plain"]
    rows = []
    plain_ms = statistics.median(plain.ms)
    scale = plain.out.abs().max().item() or 1.0

    def difference(a: torch.Tensor, b: torch.Tensor) -> str:
        return f"{(a - b).abs().max().item() / scale:.1e}"

    for edit in edits:
        fused, ref = results[edit.label], results[f"{edit.label} reference"]
        edit_ms = statistics.median(fused.ms)
        # cond_or_uncond [1, 0]: the edited rows are the cond chunk's targets; every other row must come
        # out as in the plain call, the edited ones differently, and the fused edit as the explicit one.
        edited = list(range(2 + targets, 2 * (1 + targets)))
        unedited = [row for row in range(2 * (1 + targets)) if row not in edited]
        rows.append(
            [
                model,
                f"{latent}x{latent}",
                edit.label,
                targets,
                f"{plain_ms:.1f}",
                f"{edit_ms:.1f}",
                ratio(edit_ms, plain_ms),
                f"{statistics.median(ref.ms):.1f}",
                f"{plain.peak / MB:.0f}",
                f"{fused.peak / MB:.0f}",
                ratio(fused.peak, plain.peak),
                ratio(ref.peak, fused.peak),
                difference(fused.out[unedited], plain.out[unedited]),
                difference(fused.out[edited], plain.out[edited]),
                difference(fused.out, ref.out),
            ]
        )
    return rows


PLANS: dict[str, list[Edit]] = {
    "SD15": [
        Edit("replace", 1, "coarse"),
        Edit("replace", 1, "all"),
        Edit("refine", 1, "coarse"),
        Edit("replace", 2, "coarse"),
        Edit("replace", 4, "coarse"),
    ],
    "SDXL": [Edit("replace", 1, "coarse"), Edit("replace", 1, "all"), Edit("refine", 1, "coarse")],
}
LATENTS = {"SD15": 64, "SDXL": 128}
LABELS = {"SD15": "SD1.5 512px", "SDXL": "SDXL 1024px"}
SMALL_CHANNELS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=("fp16", "bf16", "fp32"), help="default: fp16 on CUDA, fp32 on the CPU")
    parser.add_argument("--models", nargs="+", choices=list(LAYOUTS), help="default: SD15 SDXL (SD15 with --small)")
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"a quick check: the layouts at base width {SMALL_CHANNELS} (not 320), a 16x16 latent, 1 and 2 targets",
    )
    parser.add_argument(
        "--repeats", type=int, help="measured rounds (default 10 on CUDA, 3 on the CPU, 2 with --small)"
    )
    parser.add_argument("--warmup", type=int, help="rounds before measuring (default 2, 1 with --small)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 with --small)")
    opts = parser.parse_args()
    device = torch.device(opts.device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[
        opts.dtype or ("fp16" if device.type == "cuda" else "fp32")
    ]
    if opts.threads or opts.small:
        # One thread by default for the quick check: on a shared, oversubscribed machine OpenMP barriers
        # of the many small ops stall (here: 4 min with 2 threads, 14 s with one).
        torch.set_num_threads(opts.threads or 1)
    repeats = opts.repeats or (10 if device.type == "cuda" else 2 if opts.small else 3)
    warmup = opts.warmup if opts.warmup is not None else (1 if opts.small else 2)
    models = opts.models or (["SD15"] if opts.small else ["SD15", "SDXL"])

    host = put_comfy_on_path(vendor=True)
    if device.type == "cpu":
        import comfy.cli_args

        comfy.cli_args.args.cpu = True  # ComfyUI's model management otherwise looks for a GPU
    pack = import_pack()
    import comfy.ldm.modules.attention as comfy_attention

    print(
        f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), {dtype}, "
        f"torch {torch.__version__}, ComfyUI from {host}, kernel {comfy_attention.optimized_attention.__name__}, "
        f"{repeats} rounds after {warmup} warm-up",
        file=sys.stderr,
        flush=True,
    )
    table_rows = []
    for name in models:
        unet = build_unet(name, device, dtype, SMALL_CHANNELS if opts.small else 320)
        patches = attention_patches(pack[0], unet)
        latent = 16 if opts.small else LATENTS[name]
        edits = [e for e in PLANS[name] if not opts.small or e.self_layers == "coarse" and e.targets <= 2]
        for targets in sorted({e.targets for e in edits}):
            group = [e for e in edits if e.targets == targets]
            configs: dict[str, dict] = {"plain": {}}
            for edit in group:
                state = edit_state(pack, edit)
                configs[edit.label] = {"patches_replace": patches, pack[1].RUN_KEY: pack[1].EditRun(state)}
                configs[f"{edit.label} reference"] = {
                    "patches_replace": patches,
                    pack[1].RUN_KEY: pack[1].EditRun(replace(state, reference=True)),
                }
            inputs = make_inputs(name, 1 + targets, latent, device, dtype)
            results = run_group(unet, inputs, configs, device, repeats, warmup)
            label = f"{name} layout, width {SMALL_CHANNELS}" if opts.small else LABELS[name]
            table_rows += rows_for(label, latent, group, results, targets)
            print(f"  measured {name} x{targets}", file=sys.stderr, flush=True)
            del inputs, results
        del unet, patches
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(table(HEADER, table_rows))
    print(
        "\nbatch 2(1+N) (uncond and cond chunks of source + N targets); ms: median; MB: peak over the memory "
        "before the call; targets: edit/plain <= 1.10x in time and memory. Last three columns: max |difference| "
        "over the plain output's max |value|: of the rows the edit leaves alone (sources, uncond chunk: ~0 expected) "
        "and of the cond chunk's targets (the edit: > 0) against the plain call, and of the edit against the "
        "explicit reference (~0 expected, up to the dtype's rounding)."
    )


if __name__ == "__main__":
    main()
