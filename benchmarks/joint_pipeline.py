"""Edit vs plain sampling on the joint-attention models, at Flux.1 and SD3.5 Large widths: wall time and peak memory,
side by side, as ratios (benchmarks/perf.py's pipeline method and meters).

    python -m benchmarks.joint_pipeline --threads 1 --repeats 3 > benchmarks/results/cpu_joint_pipeline.txt
    python -m benchmarks.joint_pipeline --models sd35 --size 128 --steps 3 --repeats 3

Models (devtools/harness.py, ComfyUI's own classes and configs, random weights, tiny text encoders on the real
tokenizers): `flux_widths`, Flux.1 dev's widths (3072 = 24 heads of 128, MLP 4x) in 1 double and 1 single block
(Flux.1: 19 + 38), 256 text tokens (ComfyUI pads T5 to 256), guidance 3.5, cfg 1; `sd35_large_widths`, SD3.5
Large's (2432 = 38 heads of 64, q/k RMSNorm) in 2 of its 38 joint blocks, 154 text tokens (77 CLIP-L/G + 77 T5).
Image tokens: (size / 16)^2 (the VAE's 8x, patches of 2). A whole 1024 px Flux (4096 image tokens, 57 blocks) is
far beyond this 2-core CPU, hence a few blocks at a small size; the table says which.

Configurations, each against its model's plain sampling of the same batch (the source and target prompts from a
batch-2 latent, stock KSampler, same sampler, steps and cfg): `replace` (AttentionReplace, cross_replace 0.8, the
default self_layers), `replace + reweight` (and Reweight of the target's word `car`, x2), and on SD3.5 `plain +
dit replace`: the plain model with a `patches_replace["dit"]` replace on every joint block that runs it unchanged
(P2PTestOtherDitReplace, shift 0). ComfyUI runs an SD3 block that has a dit replace through
`torch.utils.checkpoint` (its `block_mixing` default), without one directly: that row is what the checkpoint
costs, a part of the edit's cost (the edit labels every block through such a replace).

Time: perf.Pipeline's every `CFGGuider.sample` call, one process with the model built once, the configurations
alternated, the median of `--repeats` rounds after two warm-up graphs. Memory: one fresh process per
configuration (perf.EXACT_RSS), perf.PeakMeter's resident-set high-water mark over the resident set when sampling
starts: the sampler's working memory, without the weights (the same on both sides).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import torch

from devtools.graphs import edit_graph

from .perf import MB, Pipeline, measure_pipeline, pipeline_rows
from .report import ratio, table

TARGET = "a red cat riding a car"
"""The edited prompt (devtools.graphs.edit_graph's source: 'a red cat riding a bicycle')."""
BOUND = 1.10
"""The issue's target: edit vs plain at most 1.10x in time and peak memory."""


@dataclass(frozen=True)
class Model:
    name: str
    family: str
    shape: str
    cfg: float


MODELS = {
    "flux": Model(
        "Flux.1 dev", "flux_widths", "3072 wide, 24 heads x 128, 1 double + 1 single block of 19 + 38, 256 text", 1.0
    ),
    "sd35": Model("SD3.5 Large", "sd35_large_widths", "2432 wide, 38 heads x 64, 2 of 38 joint blocks, 154 text", 1.0),
}


@dataclass(frozen=True)
class JointConfig:
    name: str
    model: str
    edit: str
    """plain, dit-replace, replace or reweight."""


CONFIGS = [
    JointConfig("Flux: plain", "flux", "plain"),
    JointConfig("Flux: replace", "flux", "replace"),
    JointConfig("Flux: replace + reweight", "flux", "reweight"),
    JointConfig("SD3.5: plain", "sd35", "plain"),
    JointConfig("SD3.5: plain + dit replace", "sd35", "dit-replace"),
    JointConfig("SD3.5: replace", "sd35", "replace"),
    JointConfig("SD3.5: replace + reweight", "sd35", "reweight"),
]


def joint_graph(config: JointConfig, size: int, steps: int, seed: int) -> dict:
    """devtools.graphs.edit_graph for the configuration: euler, `steps`, the model's cfg, a `size` px latent (batch
    2 for plain sampling, 1 for an edit, which gives every branch the same noise)."""
    model = MODELS[config.model]
    plain = config.edit in ("plain", "dit-replace")
    graph = edit_graph(
        family=model.family,
        target=TARGET,
        edit=None if plain else "AttentionReplace",
        chain=[("Reweight", {"weights": "car=2", "cross_replace": 0.8, "self_replace": 0.4})]
        if config.edit == "reweight"
        else [],
        steps=steps,
        cfg=model.cfg,
        width=size,
        height=size,
        batch=2 if plain else 1,
        seed=seed,
    )
    if config.edit == "dit-replace":
        graph["other"] = {"class_type": "P2PTestOtherDitReplace", "inputs": {"model": ["model", 0], "shift": 0.0}}
        graph["sample"]["inputs"]["model"] = ["other", 0]
    return graph


def worker(opts: argparse.Namespace, names: list[str], memory: bool) -> dict:
    pipeline = Pipeline(torch.device("cpu"), memory)
    configs = [c for c in CONFIGS if c.name in names]
    return measure_pipeline(
        pipeline, configs, lambda c, seed: joint_graph(c, opts.size, opts.steps, seed), opts.repeats
    )


def results_table(results: dict[str, dict], configs: list[JointConfig]) -> str:
    header = ["configuration", "baseline", "wall s", "baseline wall s", "wall ratio", "CPU-time ratio"]
    header += ["working MB", "baseline MB", "memory ratio", f"target <= {BOUND:.2f}x (wall and memory)"]
    body = []
    for c in configs:
        base_name = f"{c.name.split(':')[0]}: plain"
        r, b = results[c.name], results[base_name]
        if c.name == base_name:
            verdict = "-"
        elif c.edit == "dit-replace":
            verdict = "none (what torch.utils.checkpoint costs)"
        else:
            met = r["seconds"] / b["seconds"] <= BOUND and r["peak"] / b["peak"] <= BOUND
            verdict = "met" if met else "NOT met"
        body.append(
            [
                c.name,
                "-" if c.name == base_name else base_name,
                f"{r['seconds']:.2f}",
                f"{b['seconds']:.2f}",
                ratio(r["seconds"], b["seconds"]),
                ratio(r["cpu"], b["cpu"]),
                f"{r['peak'] / MB:.0f}",
                f"{b['peak'] / MB:.0f}",
                ratio(r["peak"], b["peak"]),
                verdict,
            ]
        )
    return table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--size", type=int, default=64, help="image size in px: (size / 16)^2 image tokens")
    parser.add_argument("--steps", type=int, default=2, help="sampling steps (euler)")
    parser.add_argument("--repeats", type=int, default=2, help="timing rounds (alternated, after a warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.worker:
        kind, names = opts.worker
        print(json.dumps(worker(opts, json.loads(names), memory=kind == "pipeline-memory")))
        return

    print(
        f"# Prompt-to-Prompt on joint-attention models, edit vs plain sampling: {sys.platform}, torch "
        f"{torch.__version__}, CPU, {torch.get_num_threads()} CPU threads, {os.cpu_count()} cores"
    )
    print(f"command: python -m benchmarks.joint_pipeline {' '.join(sys.argv[1:])}".rstrip())
    print(f"load average at the start: {os.getloadavg()[0]:.1f} (other jobs on the machine stretch wall times)")
    image = (opts.size // 16) ** 2
    print(
        f"\n{opts.size} px ({image} image tokens), euler, {opts.steps} steps, a source and a target prompt; time = "
        f"median of {opts.repeats} alternated rounds, memory = sampler working set (peak RSS over RSS at sampling "
        "start). A few blocks at real widths, not whole models:"
    )
    for key in opts.models:
        model = MODELS[key]
        print(f"- {model.name} ({model.family}): {model.shape} tokens, cfg {model.cfg:g}")
    configs = [c for c in CONFIGS if c.model in opts.models]
    results = {}
    for key in opts.models:
        results |= pipeline_rows(opts, [c for c in configs if c.model == key], module="benchmarks.joint_pipeline")
    print()
    print(results_table(results, configs))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
