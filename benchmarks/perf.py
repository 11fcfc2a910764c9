"""What a Prompt-to-Prompt edit costs: wall time and peak memory, side by side, as ratios.

    python -m benchmarks.perf                       # everything, on the CPU (real SD1.5 shapes)
    python -m benchmarks.perf --attention-only      # attention calls only: needs torch, not ComfyUI
    python -m benchmarks.perf --attention-only --device cuda --dtype fp16     (from the repo root)

1. Pipeline (CPU, in-process ComfyUI, the real-shape SD1.5 checkpoint of devtools/checkpoints.py):
   each edit (source + targets from one batch-1 latent) against plain stock KSampler sampling of
   the same 1+N prompts from a batch-(1+N) latent, same model, sampler, steps and cfg. Time: the
   sampler's own run (every `CFGGuider.sample` call of the graph: DDIMInvert's too), one process
   with the model loaded once, the configurations alternated, the median of the rounds after a
   warm-up round. Memory: one fresh process per configuration, the kernel's resident-set
   high-water mark (VmHWM, reset through /proc/self/clear_refs when sampling starts) over the
   resident set at that moment: the sampler's working memory. The model's own weights (3.4 GB) are
   left out of that figure; they are the same in both.
   Real images: DDIMInvert alone against one stock sampling pass of the same steps and cfg from a batch-1
   latent, and the pinned edit's sampler run against the same edit's run without pinning (both from
   DDIMInvert's latent, through KSamplerAdvanced without added noise).
2. Attention calls at the layer shapes of SD1.5 at 512 px and SDXL at 1024 px (cfg: rows uncond
   source, uncond target, cond source, cond target): the pack's fused edit on the host's kernel
   against the explicit-softmax reference (p2p_core.attention.reference_*), and the unedited
   kernel alone. On the CPU each figure comes from its own process: peak = VmHWM over the resident
   set before the call, time = median of warm calls. On CUDA: event timing and
   torch.cuda.max_memory_allocated over the memory allocated before the call.
3. Several targets (1, 2, 4): the pipeline rows `replace xN` and attention rows at `batch 2(1+N)`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from devtools.comfy_host import REPO, put_comfy_on_path
from p2p_core.attention import (
    RowLayout,
    fused_cross_attention,
    fused_self_attention,
    query_chunk,
    reference_cross_attention,
    reference_self_attention,
)
from p2p_core.edits import EditPlan
from p2p_core.schedules import Window

from .report import ratio, table

MB = 2**20

# ----------------------------------------------------------------------------------------------
# Memory and time measurement


def _proc_status(field: str) -> int:
    """A `kB` field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


class PeakMeter:
    """Peak memory of a region over the memory in use when it starts.

    CPU: the kernel's resident-set high-water mark, reset at the start (Linux clear_refs 5).
    CUDA: torch.cuda.max_memory_allocated, reset at the start.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            Path("/proc/self/clear_refs").write_text("5")
            self.base = _proc_status("VmRSS")

    def peak(self) -> int:
        """Bytes above the start."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) - self.base
        return _proc_status("VmHWM") - self.base


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds of one call of `fn`; on CUDA both are the device time between events."""
    if device.type == "cuda":
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        torch.cuda.synchronize(device)
        return (begin.elapsed_time(end) / 1000,) * 2
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


EXACT_RSS = {"MALLOC_MMAP_THRESHOLD_": str(64 << 10)}
"""glibc: every block of 64 KiB or more in its own mapping, returned to the system when freed (a fixed
threshold also stops glibc raising it after the first large free), so the resident set follows the
live tensors and VmHWM is the call's own peak, not the allocator's leftovers."""


def _child(args: list[str], env: dict[str, str] | None = None, module: str = "benchmarks.perf") -> dict:
    """Run the benchmark script `module` in a fresh process (`--worker ...`, `env` added to the environment)
    and return the JSON line it prints last.

    The worker's progress lines (indented) are passed on; the rest of its stderr only on failure."""
    command = [sys.executable, "-m", module, *args]
    with (
        tempfile.TemporaryFile("w+") as stdout,
        subprocess.Popen(
            command, stdout=stdout, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, cwd=REPO
        ) as proc,
    ):
        log = []
        for line in proc.stderr:
            if line.startswith(("  measured", "  timing")):
                print(line, end="", file=sys.stderr, flush=True)
            log.append(line)
        proc.wait()
        stdout.seek(0)
        out = stdout.read()
    if proc.returncode:
        raise RuntimeError(f"worker {' '.join(args)} failed:\n{''.join(log[-60:])}")
    return json.loads(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------------
# 2. Attention calls


@dataclass(frozen=True)
class Layer:
    model: str
    tokens: int
    heads: int
    dim: int
    factor: int
    """How many times coarser than the latent (self-injection acts on factor >= 4 by default)."""


CONTEXT = 77
LAYERS = [
    Layer("SD1.5 512px", 4096, 8, 40, 1),
    Layer("SD1.5 512px", 1024, 8, 80, 2),
    Layer("SD1.5 512px", 256, 8, 160, 4),
    Layer("SD1.5 512px", 64, 8, 160, 8),
    Layer("SDXL 1024px", 4096, 10, 64, 2),
    Layer("SDXL 1024px", 1024, 20, 64, 4),
]
KINDS = ("self", "cross-replace", "cross-refine")
PATHS = ("kernel", "fused", "explicit")


def _edit_terms(kind: str, targets: int, device: torch.device, dtype: torch.dtype):
    """The CrossTerms of a word swap (a one-to-two-token swap: folded values only) or a refine
    (two new target tokens: the fused path adds the direct term), first step of a 0.8 window."""
    mapper = torch.eye(CONTEXT)
    injected = torch.ones(CONTEXT)
    if kind == "cross-replace":
        mapper[5, 5] = mapper[5, 6] = 0.5
        mapper[6, 6] = 0.0
        mapper[6, 7] = 1.0
        mapper[7, 7] = 0.0
    else:
        mapper = torch.roll(torch.eye(CONTEXT), 2, dims=1)
        mapper[:, :2] = 0
        injected[1:3] = 0
    target = EditPlan.for_target(mapper, injected, Window(0.0, 0.8), {})
    plan = EditPlan((target,) * targets, Window(0.0, 0.4))
    return plan.cross_terms(0, 10, CONTEXT, device, dtype)


def sdpa_kernel(heads: int) -> Callable:
    """torch SDPA on [B, N, H*D] tensors (the kernel ComfyUI uses on CUDA, attention_pytorch)."""

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, inner = q.shape
        split = [t.view(b, -1, heads, inner // heads).transpose(1, 2) for t in (q, k, v)]
        out = torch.nn.functional.scaled_dot_product_attention(*split)
        return out.transpose(1, 2).reshape(b, n, inner)

    return attend


def host_kernel(heads: int, device: torch.device) -> Callable:
    """ComfyUI's own `optimized_attention` (sub-quadratic attention on the CPU)."""
    put_comfy_on_path()
    import comfy.cli_args

    comfy.cli_args.args.cpu = device.type == "cpu"
    from comfy.ldm.modules.attention import optimized_attention

    return lambda q, k, v: optimized_attention(q, k, v, heads)


def attention_call(
    layer: Layer, kind: str, path: str, targets: int, device: torch.device, dtype: torch.dtype, kernel: str
):
    """(fn, fresh inputs) for one attention call of `layer`; fn(q, k, v) -> out."""
    rows = 1 + targets
    batch = 2 * rows
    inner = layer.heads * layer.dim
    nk = layer.tokens if kind == "self" else CONTEXT
    layout = RowLayout((rows,), targets)
    cpu = device.type == "cpu"  # query chunks into the spent queries, as the pack's patch does on the CPU
    attend = sdpa_kernel(layer.heads) if kernel == "sdpa" else host_kernel(layer.heads, device)
    generator = torch.Generator(device=device).manual_seed(0)

    def inputs():
        return [
            torch.randn(batch, n, inner, generator=generator, device=device, dtype=dtype)
            for n in (layer.tokens, nk, nk)
        ]

    if path == "kernel":
        return attend, inputs
    if kind == "self":
        if path == "fused":
            return lambda q, k, v: fused_self_attention(
                q, k, v, attend, layout, query_chunk(q) if cpu else None
            ), inputs
        return lambda q, k, v: reference_self_attention(q, k, v, layer.heads, layout), inputs
    terms = _edit_terms(kind, targets, device, dtype)
    if path == "fused":
        return lambda q, k, v: fused_cross_attention(
            q, k, v, attend, layout, terms, query_chunk(q) if cpu else None
        ), inputs
    return lambda q, k, v: reference_cross_attention(q, k, v, layer.heads, layout, terms), inputs


def measure_calls(
    fn: Callable[..., torch.Tensor],
    inputs: Callable[[], list[torch.Tensor]],
    device: torch.device,
    repeats: int,
    warm_up: Callable[[], object] | None = None,
) -> dict:
    """{"seconds", "cpu": median wall and process-CPU time of `repeats` calls fn(*inputs()), fresh inputs for
    each, "peak": bytes above the memory in use before the first of them}, after one warm-up call (`warm_up`,
    or a call of fn), so that the libraries' one-time buffers are neither timed nor counted."""
    meter = PeakMeter(device)
    times, peak = [], 0
    with torch.inference_mode():
        (warm_up or (lambda: fn(*inputs())))()
        for repeat in range(repeats):
            args = inputs()
            if repeat == 0:
                meter.start()
            times.append(timed(lambda a=args: fn(*a), device))
            if repeat == 0:
                peak = meter.peak()
            del args
    return {
        "seconds": statistics.median(t for t, _ in times),
        "cpu": statistics.median(c for _, c in times),
        "peak": peak,
    }


def measure_attention(
    layer: Layer,
    kind: str,
    path: str,
    targets: int,
    device: torch.device,
    dtype: torch.dtype,
    kernel: str,
    repeats: int,
) -> dict:
    """measure_calls of one attention call of the layer's shape."""
    fn, inputs = attention_call(layer, kind, path, targets, device, dtype, kernel)
    return measure_calls(fn, inputs, device, repeats)


def attention_rows(opts: argparse.Namespace) -> list[dict]:
    device, dtype = torch.device(opts.device), DTYPES[opts.dtype]
    cases = [(layer, kind, 1) for layer in LAYERS for kind in KINDS]
    sweep = LAYERS[5]  # SDXL's 32x32 layer, where self-attention injection acts by default
    cases += [(sweep, kind, t) for t in (2, 4) for kind in ("self", "cross-refine")]
    rows = []
    kernels: dict[tuple, dict] = {}
    for layer, kind, targets in cases:
        result = {"layer": layer, "kind": kind, "targets": targets}
        for path in PATHS:
            key = (layer, kind == "self", targets)
            if path == "kernel" and key in kernels:
                result[path] = kernels[key]  # the same unedited call
                continue
            spec = [layer.model, layer.tokens, layer.heads, layer.dim, layer.factor, kind, path, targets]
            if device.type == "cuda":
                got = measure_attention(layer, kind, path, targets, device, dtype, opts.kernel, opts.call_repeats)
            else:
                flags = [
                    "--dtype",
                    opts.dtype,
                    "--kernel",
                    opts.kernel,
                    "--call-repeats",
                    str(opts.call_repeats),
                    "--threads",
                    str(opts.threads),
                ]
                got = _child(["--worker", "attention", json.dumps(spec), *flags], EXACT_RSS)
            result[path] = got
            if path == "kernel":
                kernels[key] = got
        rows.append(result)
        line = attention_table([result]).splitlines()[-1]
        print(f"  measured {line}", file=sys.stderr, flush=True)
    return rows


def attention_table(rows: list[dict]) -> str:
    header = [
        "layer",
        "tokens x heads x dim",
        "call",
        "targets",
        "kernel ms",
        "fused ms",
        "explicit ms",
        "fused/kernel time",
        "explicit/fused time",
        "explicit/fused CPU time",
        "kernel MB",
        "fused MB",
        "explicit MB",
        "fused/kernel memory",
        "explicit/fused memory",
    ]
    body = []
    for r in rows:
        layer, k, f, e = r["layer"], r["kernel"], r["fused"], r["explicit"]
        body.append(
            [
                layer.model,
                f"{layer.tokens}x{layer.heads}x{layer.dim}",
                r["kind"],
                r["targets"],
                f"{k['seconds'] * 1000:.1f}",
                f"{f['seconds'] * 1000:.1f}",
                f"{e['seconds'] * 1000:.1f}",
                ratio(f["seconds"], k["seconds"]),
                ratio(e["seconds"], f["seconds"]),
                ratio(e["cpu"], f["cpu"]),
                f"{k['peak'] / MB:.0f}",
                f"{f['peak'] / MB:.0f}",
                f"{e['peak'] / MB:.0f}",
                ratio(f["peak"], k["peak"]),
                ratio(e["peak"], f["peak"]),
            ]
        )
    return table(header, body)


# ----------------------------------------------------------------------------------------------
# 1 and 3. Pipeline: an edit against plain sampling of the same batch


SOURCE = "a cat riding a bicycle"
TARGETS = ["a cat riding a car", "a cat riding a horse", "a cat riding a boat", "a cat riding a train"]
REFINE_TARGET = "a fluffy cat riding a red bicycle"


@dataclass(frozen=True)
class Config:
    name: str
    edit: str
    """plain, plain-advanced, replace, refine, reweight, blend, invert-only, inversion or inversion-unpinned."""
    targets: int = 1
    needs: str = ""
    """A node this configuration needs ('' for none)."""
    cfg: float = 7.5
    single: bool = False
    """A batch-1 latent for a plain configuration (the baseline of DDIMInvert alone)."""


CONFIGS = [
    Config("plain", "plain"),
    Config("replace", "replace"),
    Config("refine", "refine"),
    Config("replace + reweight", "reweight"),
    Config("replace + local blend", "blend", needs="LocalBlend"),
    Config("plain (KSamplerAdvanced)", "plain-advanced", needs="DDIMInvert"),
    Config("inversion + pinned replace", "inversion", needs="DDIMInvert"),
    Config("inversion + unpinned replace", "inversion-unpinned", needs="DDIMInvert"),
    Config("plain x1, cfg 1", "plain", cfg=1.0, single=True),
    Config("DDIMInvert alone, cfg 1", "invert-only", needs="DDIMInvert", cfg=1.0),
    Config("plain x2", "plain", 2),
    Config("replace x2", "replace", 2),
    Config("plain x4", "plain", 4),
    Config("replace x4", "replace", 4),
]
BASELINE = {
    "plain": "plain",
    "replace": "plain",
    "refine": "plain",
    "reweight": "plain",
    "blend": "plain",
    "inversion": "plain (KSamplerAdvanced)",
    "inversion-unpinned": "plain (KSamplerAdvanced)",
    "invert-only": "plain x1, cfg 1",
}
PINNED_VS_UNPINNED = ("inversion + pinned replace", "inversion + unpinned replace")
"""The pinned edit against the same edit without pinning: their last sampler runs (the edit's own)."""


def pipeline_graph(config: Config, ckpt: str, size: int, steps: int, seed: int) -> dict:
    """Stock loader -> PromptPair -> [DDIMInvert] -> [edit nodes] -> KSampler -> latent capture (or DDIMInvert ->
    latent capture alone). Inversion runs at cfg 1 (DDIMInvert's default) unless the configuration says otherwise."""
    targets = REFINE_TARGET if config.edit == "refine" else "\n".join(TARGETS[: config.targets])
    rows = 1 if config.single else 1 + config.targets
    plain = config.edit.startswith("plain")
    graph = {
        "load": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "pair": {"class_type": "PromptPair", "inputs": {"clip": ["load", 1], "source": SOURCE, "target": targets}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["load", 1], "text": ""}},
        "latent": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": rows if plain else 1},
        },
    }
    model = ["load", 0]
    windows = {"cross_replace": 0.8, "self_replace": 0.4}
    common = {"prompts": ["pair", 1]}
    if config.edit in ("inversion", "inversion-unpinned", "invert-only"):
        graph["invert"] = {
            "class_type": "DDIMInvert",
            "inputs": {
                "model": model,
                "positive": ["pair", 0],
                "latent": ["latent", 0],
                "steps": steps,
                "scheduler": "normal",
            },
        }
        if config.edit == "invert-only" and config.cfg != 1.0:
            graph["invert"]["inputs"].update(cfg=config.cfg, negative=["negative", 0])
    if config.edit == "invert-only":
        graph["capture"] = {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["invert", 0], "name": "out"}}
        return graph
    if config.edit in ("replace", "reweight", "blend", "inversion", "inversion-unpinned"):
        inputs = {"model": model, **common, **windows}
        if config.edit == "inversion":
            inputs["inversion"] = ["invert", 1]
        graph["edit"] = {"class_type": "AttentionReplace", "inputs": inputs}
        model = ["edit", 0]
    if config.edit == "refine":
        graph["edit"] = {"class_type": "AttentionRefine", "inputs": {"model": model, **common, **windows}}
        model = ["edit", 0]
    if config.edit == "reweight":
        graph["reweight"] = {
            "class_type": "Reweight",
            "inputs": {"model": model, **common, "weights": "car=2.0", **windows},
        }
        model = ["reweight", 0]
    if config.edit == "blend":
        graph["blend"] = {
            "class_type": "LocalBlend",
            "inputs": {"model": model, **common, "source_words": "bicycle", "target_words": "car", "threshold": 0.3},
        }
        model = ["blend", 0]
    sampling = {
        "model": model,
        "positive": ["pair", 0],
        "negative": ["negative", 0],
        "steps": steps,
        "cfg": config.cfg,
        "sampler_name": "euler",
        "scheduler": "normal",
    }
    if config.edit in ("inversion", "inversion-unpinned", "plain-advanced"):
        latent = ["latent", 0] if config.edit == "plain-advanced" else ["invert", 0]
        graph["sample"] = {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                **sampling,
                "latent_image": latent,
                "add_noise": "disable",
                "noise_seed": seed,
                "start_at_step": 0,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
            },
        }
    else:
        graph["sample"] = {
            "class_type": "KSampler",
            "inputs": {**sampling, "latent_image": ["latent", 0], "seed": seed, "denoise": 1.0},
        }
    graph["capture"] = {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": "out"}}
    return graph


class Pipeline:
    """An in-process ComfyUI whose executor keeps its cache between graphs (the checkpoint loads
    once, as in a running ComfyUI), and that measures every sampler run."""

    def __init__(self, device: torch.device, memory: bool) -> None:
        from devtools import harness as comfy_harness

        comfy_harness.boot()
        import comfy.samplers
        import execution

        # DDIMInvert's inputs are the same in every graph (it takes no seed): without this, the executor would
        # reuse its output from the graph before (two inversion configurations in a row) instead of running it.
        invert = execution.nodes.NODE_CLASS_MAPPINGS.get("DDIMInvert")
        if invert is not None:
            invert.fingerprint_inputs = classmethod(lambda cls, **inputs: float("nan"))

        self.memory = memory
        self.executor = execution.PromptExecutor(comfy_harness._Server(), cache_args={"lru": 0, "ram": 0})
        self.runs: list[tuple[float, float, int]] = []
        meter = PeakMeter(device)
        sample = comfy.samplers.CFGGuider.sample

        def measured(guider, *args, **kwargs):
            if memory:
                meter.start()
            begin, begin_cpu = time.perf_counter(), time.process_time()
            out = sample(guider, *args, **kwargs)
            wall, cpu = time.perf_counter() - begin, time.process_time() - begin_cpu
            self.runs.append((wall, cpu, meter.peak() if memory else 0))
            return out

        comfy.samplers.CFGGuider.sample = measured

    def run(self, graph: dict) -> list[list[float]]:
        """[wall s, process CPU s, peak bytes] of each sampler run of the graph, in order."""
        import asyncio
        import uuid

        import execution

        self.runs.clear()
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, _ = asyncio.run(execution.validate_prompt(prompt_id, graph, None))
        if not valid:
            raise RuntimeError(f"{error.get('message')}: {error.get('details')}")
        self.executor.execute(graph, prompt_id, {}, outputs)
        if not self.executor.success:
            raise RuntimeError(f"the graph failed: {self.executor.status_messages[-1]}")
        return [list(run) for run in self.runs]


def pipeline_rows(opts: argparse.Namespace, configs: list, module: str = "benchmarks.perf") -> dict[str, dict]:
    """{config name: {"seconds", "cpu": median totals; "last", "last_cpu": medians of its last sampler run;
    "peak": the largest peak of its sampler runs, "last_peak": its last run's, bytes}}.

    The timing process runs while the memory processes run one after the other: both sides of every
    ratio share the machine alike (the timing alternates the configurations). `configs`: objects with a `name`,
    which the script `module` measures as its `--worker pipeline-time` / `pipeline-memory` (`measure_pipeline`)."""
    size = ["--size", str(opts.size), "--steps", str(opts.steps), "--threads", str(opts.threads)]
    with ThreadPoolExecutor(1) as pool:
        names = json.dumps([c.name for c in configs])
        timing = pool.submit(
            _child, ["--worker", "pipeline-time", names, *size, "--repeats", str(opts.repeats)], None, module
        )
        memory = {}
        for config in configs:
            memory.update(_child(["--worker", "pipeline-memory", json.dumps([config.name]), *size], EXACT_RSS, module))
            print(f"  measured the memory of {config.name}", file=sys.stderr, flush=True)
        times = timing.result()
    return {
        c.name: {
            "seconds": statistics.median(sum(run[0] for run in runs) for runs in times[c.name]),
            "cpu": statistics.median(sum(run[1] for run in runs) for runs in times[c.name]),
            "last": statistics.median(runs[-1][0] for runs in times[c.name]),
            "last_cpu": statistics.median(runs[-1][1] for runs in times[c.name]),
            "peak": max(run[2] for run in memory[c.name]),
            "last_peak": memory[c.name][-1][2],
        }
        for c in configs
    }


def measure_pipeline(pipeline: Pipeline, configs: list, graph: Callable[[object, int], dict], repeats: int) -> dict:
    """A worker's measurements: with a memory Pipeline, {name: runs} of the one configuration's graph; else
    {name: [runs of each round]}: two warm-up graphs, then `repeats` rounds of every configuration, alternated.
    `graph(config, seed)` is the configuration's API graph; no round repeats a warm-up's seed (the executor would
    serve that graph's sampler from its cache)."""
    if pipeline.memory:
        (config,) = configs
        return {config.name: pipeline.run(graph(config, 1))}
    times: dict[str, list[list[list[float]]]] = {c.name: [] for c in configs}
    for config in configs[:2]:  # warm-up
        pipeline.run(graph(config, 0))
    for round_ in range(repeats):
        order = configs if round_ % 2 else configs[::-1]
        for i, config in enumerate(order):
            times[config.name].append(pipeline.run(graph(config, 100 * (round_ + 1) + i)))  # not a warm-up's seed
        print(f"  timing round {round_ + 1} of {repeats} done", file=sys.stderr, flush=True)
    return times


def pipeline_worker(opts: argparse.Namespace, names: list[str], memory: bool) -> dict:
    from devtools.checkpoints import checkpoint

    pipeline = Pipeline(torch.device("cpu"), memory)
    ckpt = checkpoint("sd15")
    configs = [c for c in CONFIGS if c.name in names]
    return measure_pipeline(
        pipeline, configs, lambda c, seed: pipeline_graph(c, ckpt, opts.size, opts.steps, seed), opts.repeats
    )


def chosen_configs(names: list[str] | None) -> list[Config]:
    """The configurations named (every one when None), with the baselines they are measured against."""
    if not names:
        return CONFIGS
    by_name = {c.name: c for c in CONFIGS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise SystemExit(f"unknown configuration {unknown}; choose from {list(by_name)}")
    wanted = set(names)
    for c in map(by_name.get, names):
        if not c.edit.startswith("plain"):
            wanted.add(BASELINE[c.edit] if c.targets == 1 else f"plain x{c.targets}")
    return [c for c in CONFIGS if c.name in wanted]


def available_nodes() -> set[str]:
    """Node ids the pack registers (read from nodes/__init__.py's imports, without importing ComfyUI)."""
    text = (REPO / "nodes" / "__init__.py").read_text()
    return {name for name in ("LocalBlend", "DDIMInvert") if name in text}


def pipeline_table(results: dict[str, dict], configs: list[Config], missing: list[Config]) -> str:
    header = [
        "configuration",
        "baseline",
        "wall s",
        "baseline wall s",
        "wall ratio",
        "CPU-time ratio",
        "working MB",
        "baseline MB",
        "memory ratio",
        "target (wall and memory)",
    ]
    body = []

    def row(
        name: str,
        base_name: str,
        r: dict,
        b: dict,
        bound: float | None,
        note: str = "-",
        keys: tuple[str, str, str] = ("seconds", "cpu", "peak"),
    ) -> None:
        """One line: `r` against `b` on the keys (wall, CPU, peak) of each; with no bound, `note` as the target."""
        wall, cpu, peak = keys
        if bound is None:
            verdict = note
        else:
            ok = r[wall] / b[wall] <= bound and r[peak] / b[peak] <= bound
            verdict = f"<= {bound:.2f}x: {'met' if ok else 'NOT met'}"
        body.append(
            [
                name,
                base_name,
                f"{r[wall]:.2f}",
                f"{b[wall]:.2f}",
                ratio(r[wall], b[wall]),
                ratio(r[cpu], b[cpu]),
                f"{r[peak] / MB:.0f}",
                f"{b[peak] / MB:.0f}",
                ratio(r[peak], b[peak]),
                verdict,
            ]
        )

    for c in configs:
        r = results[c.name]
        if c.edit.startswith("plain"):
            row(c.name, "-", r, r, None)
            continue
        base_name = BASELINE[c.edit] if c.targets == 1 else f"plain x{c.targets}"
        b = results[base_name]
        inverts = c.edit in ("inversion", "inversion-unpinned")
        bound = None if inverts else {"blend": 1.15}.get(c.edit, 1.10)
        row(c.name, base_name, r, b, bound, "none (DDIMInvert is an extra pass)")
        if c.edit == "inversion":
            last = {"seconds": r["last"], "cpu": r["last_cpu"], "peak": r["last_peak"]}
            row(f"{c.name}: the edit's sampler run alone", base_name, last, b, None)
        pinned, unpinned = PINNED_VS_UNPINNED
        if c.name == unpinned and pinned in results:
            row(
                "pinned replace: the edit's sampler run",
                "the same replace unpinned (its sampler run)",
                results[pinned],
                r,
                1.10,
                keys=("last", "last_cpu", "last_peak"),
            )
    body += [[c.name, "not available"] + [""] * 8 for c in missing]
    return table(header, body)


# ----------------------------------------------------------------------------------------------


DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--attention-only", action="store_true", help="only the attention calls (no ComfyUI)")
    parser.add_argument("--pipeline-only", action="store_true", help="only the ComfyUI pipeline")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype", choices=list(DTYPES), default=None, help="attention calls (default fp32 on CPU, fp16 on CUDA)"
    )
    parser.add_argument(
        "--kernel",
        choices=["host", "sdpa"],
        default=None,
        help="the attention kernel: ComfyUI's optimized_attention (default with ComfyUI), or torch "
        "SDPA (default with --attention-only)",
    )
    parser.add_argument("--size", type=int, default=64, help="pipeline image size in px (SD1.5 shapes)")
    parser.add_argument("--steps", type=int, default=3, help="pipeline sampling steps")
    parser.add_argument("--repeats", type=int, default=2, help="pipeline timing rounds (alternated, after a warm-up)")
    parser.add_argument("--call-repeats", type=int, default=3, help="timed calls per attention measurement")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--configs", nargs="+", metavar="NAME", help="only these pipeline configurations (their baselines are added)"
    )
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    opts.dtype = opts.dtype or ("fp16" if opts.device == "cuda" else "fp32")
    opts.kernel = opts.kernel or ("sdpa" if opts.attention_only else "host")

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.worker:
        kind, spec = opts.worker
        if kind == "attention":
            model, tokens, heads, dim, factor, call, path, targets = json.loads(spec)
            layer = Layer(model, tokens, heads, dim, factor)
            got = measure_attention(
                layer,
                call,
                path,
                targets,
                torch.device(opts.device),
                DTYPES[opts.dtype],
                opts.kernel,
                opts.call_repeats,
            )
        else:
            got = pipeline_worker(opts, json.loads(spec), memory=kind == "pipeline-memory")
        print(json.dumps(got))
        return

    threads = torch.get_num_threads()
    print(
        f"# Prompt-to-Prompt performance: {sys.platform}, torch {torch.__version__}, device {opts.device}, "
        f"{threads} CPU threads, {os.cpu_count()} cores"
    )
    if opts.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(torch.device(opts.device))}")
    print(f"command: python -m benchmarks.perf {' '.join(sys.argv[1:])}".rstrip())
    if not opts.attention_only:
        if opts.device != "cpu":
            print("\nThe pipeline part runs on the CPU only (the test harness boots ComfyUI with --cpu).")
        else:
            present = available_nodes()
            chosen = chosen_configs(opts.configs)
            configs = [c for c in chosen if not c.needs or c.needs in present]
            missing = [c for c in chosen if c.needs and c.needs not in present]
            print(
                f"\n## 1 and 3. Edit vs plain sampling: SD1.5 shapes, {opts.size} px, euler, {opts.steps} steps, "
                f"cfg 7.5 unless named; time = median of {opts.repeats} alternated rounds, memory = sampler working "
                "set (peak RSS over RSS at sampling start)\n"
            )
            results = pipeline_rows(opts, configs)
            print(pipeline_table(results, configs, missing))
    if not opts.pipeline_only:
        kernel = "torch SDPA" if opts.kernel == "sdpa" else "ComfyUI optimized_attention"
        print(
            f"\n## 2 and 3. One attention call, {opts.dtype}, kernel: {kernel}; edit = source + N targets under "
            "cfg (batch 2(1+N)); memory = peak over the memory in use before the call; explicit = "
            "p2p_core.attention.reference_* (float32 maps)\n"
        )
        print(attention_table(attention_rows(opts)))


if __name__ == "__main__":
    main()
