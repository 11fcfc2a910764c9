"""Joint attention at diffusion-transformer shapes: the fused Prompt-to-Prompt edit against its explicit reference.

    python -m benchmarks.joint_attention                                  # CPU, fp32, one call per figure
    python -m benchmarks.joint_attention --models flux --edits inject     # a part of it
    python -m benchmarks.joint_attention --maps --edits                     # the word maps alone
    python -m benchmarks.joint_attention --device cuda --dtype bf16 --repeats 5

One joint attention call, q, k, v [B, H, N, D] with N = text + image tokens ([text, image]), B = a
source row and its target rows (`--targets`, default 1: Flux is guidance-distilled, cfg 1):
  Flux.1 1024 px      4096 image tokens (the 128x128 latent in 2x2 patches), 512 text tokens (T5 at
                      Flux dev's longest; ComfyUI pads T5 to at least 256), 24 heads of 128;
  SD3.5 Large 1024 px 4096 image tokens, 333 text tokens (77 CLIP-L/G + 256 T5; ComfyUI pads its T5
                      part to at least 77, so a short prompt gives 154), 38 heads of 64 (ComfyUI's mmdit:
                      heads = depth = 38, hidden 64 * depth).
Edits, as the host runs them: `inject` (the targets' image-token q and k := the source's, their image
queries reading the source's text keys through a word swap's mapper: the text and the image queries in
two kernel calls) and `inject + reweight` (two words re-weighted too, 2 and -1).
Paths: `kernel` (the unedited call), `fused` (p2p_core.joint.fused_joint_attention on that kernel),
`explicit` (p2p_core.joint.reference_joint_attention: float32 maps [B, H, N, N], softmax in place).
The explicit path forms the same maps for either edit, so it is measured on the re-weight (all of it).
`--maps`: the word maps local blend and masks need (p2p_core.joint_maps.image_text_maps: two words on
every row, one kernel call on the image queries), against the unedited kernel call.
Kernel: torch SDPA in ComfyUI's `attention_pytorch` layout with skip_reshape ([B, H, N, D] in, [B, N, H*D]
out), what ComfyUI runs on CUDA and what `--use-pytorch-cross-attention` runs on the CPU.

Measured in one process, fresh random inputs for every call (the fused path writes into them), after one
warm-up call at a small shape (library and thread-pool start-up): peak = perf.PeakMeter over the first
measured call (CPU: the resident-set high-water mark over the resident set at its start, with perf.EXACT_RSS's
fixed mmap threshold, which this script sets by re-executing itself, so that freed tensors leave the resident
set; CUDA: max_memory_allocated over memory_allocated), time = median of `--repeats` calls (perf.timed: wall
and process CPU time; on CUDA device time).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from p2p_core.attention import RowLayout
from p2p_core.joint import JointLayout, JointTerms, fused_joint_attention, reference_joint_attention
from p2p_core.joint_maps import image_text_maps, word_columns

from .perf import DTYPES, EXACT_RSS, MB, measure_calls
from .report import ratio, table


@dataclass(frozen=True)
class Shape:
    model: str
    image: int
    text: int
    heads: int
    dim: int


SHAPES = {
    "flux": Shape("Flux.1 1024px", 4096, 512, 24, 128),
    "sd35": Shape("SD3.5 Large 1024px", 4096, 333, 38, 64),
}
EDITS = ("inject", "inject + reweight")
REWEIGHTED = {3: 2.0, 7: -1.0}
"""Text position -> factor of the re-weighted words."""
MAP_WORDS = [[3], [7, 8]]
"""Text positions of the words whose maps `--maps` measures (a one-token and a two-token word)."""


def comfy_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """torch SDPA, [B, H, N, D] in, [B, N, H*D] out (ComfyUI's attention_pytorch with skip_reshape=True)."""
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return out.transpose(1, 2).reshape(q.shape[0], q.shape[2], -1)


def call(shape: Shape, edit: str, path: str, targets: int) -> Callable[..., torch.Tensor]:
    """fn(q, k, v) -> out: one call of `path` for `edit` on `targets` targets."""
    rows = RowLayout((0,), targets)
    tokens = JointLayout(shape.text, shape.image)
    scale = None
    if edit == "inject + reweight":
        scale = torch.ones(targets, shape.text)
        for position, factor in REWEIGHTED.items():
            scale[:, position] = factor
    terms = JointTerms(True, scale, torch.arange(shape.text).repeat(targets, 1))
    if path == "kernel":
        return comfy_sdpa
    if path == "fused":
        return lambda q, k, v: fused_joint_attention(q, k, v, comfy_sdpa, rows, tokens, terms)
    if path == "maps":
        columns = word_columns(MAP_WORDS, shape.text)
        return lambda q, k, v: image_text_maps(q, k, comfy_sdpa, tokens, columns)
    return lambda q, k, v: reference_joint_attention(q, k, v, rows, tokens, terms)


def measure(
    shape: Shape, edit: str, path: str, targets: int, device: torch.device, dtype: torch.dtype, repeats: int
) -> dict:
    """{"seconds", "cpu": median wall and process-CPU seconds, "peak": bytes above the memory in use before the
    first measured call}."""
    fn = call(shape, edit, path, targets)
    generator = torch.Generator(device=device).manual_seed(0)

    def inputs(tokens: int) -> list[torch.Tensor]:
        size = (1 + targets, shape.heads, tokens, shape.dim)
        return [torch.randn(size, generator=generator, device=device, dtype=dtype) for _ in range(3)]

    warm = call(Shape(shape.model, 64, 16, shape.heads, shape.dim), edit, path, targets)
    return measure_calls(fn, lambda: inputs(shape.image + shape.text), device, repeats, lambda: warm(*inputs(80)))


def results_table(rows: list[dict]) -> str:
    header = [
        "model",
        "image + text tokens x heads x dim",
        "rows",
        "edit",
        "kernel ms",
        "fused ms",
        "explicit ms",
        "fused/kernel time",
        "fused/kernel CPU time",
        "explicit/fused time",
        "explicit/fused CPU time",
        "kernel MB",
        "fused MB",
        "explicit MB",
        "explicit/fused memory",
    ]
    body = []
    for r in rows:
        s, k, f, e = r["shape"], r["kernel"], r["fused"], r["explicit"]
        body.append(
            [
                s.model,
                f"{s.image} + {s.text} x {s.heads} x {s.dim}",
                r["rows"],
                r["edit"],
                f"{k['seconds'] * 1000:.0f}",
                f"{f['seconds'] * 1000:.0f}",
                f"{e['seconds'] * 1000:.0f}",
                ratio(f["seconds"], k["seconds"]),
                ratio(f["cpu"], k["cpu"]),
                ratio(e["seconds"], f["seconds"]),
                ratio(e["cpu"], f["cpu"]),
                f"{k['peak'] / MB:.0f}",
                f"{f['peak'] / MB:.0f}",
                f"{e['peak'] / MB:.0f}",
                ratio(e["peak"], f["peak"]),
            ]
        )
    return table(header, body)


def maps_table(rows: list[dict]) -> str:
    header = ["model", "rows", "words", "kernel ms", "maps ms", "maps/kernel time", "maps/kernel CPU time"]
    header += ["kernel MB", "maps MB"]
    body = [
        [
            r["shape"].model,
            r["rows"],
            len(MAP_WORDS),
            f"{r['kernel']['seconds'] * 1000:.0f}",
            f"{r['maps']['seconds'] * 1000:.0f}",
            ratio(r["maps"]["seconds"], r["kernel"]["seconds"]),
            ratio(r["maps"]["cpu"], r["kernel"]["cpu"]),
            f"{r['kernel']['peak'] / MB:.0f}",
            f"{r['maps']['peak'] / MB:.0f}",
        ]
        for r in rows
    ]
    return table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=list(DTYPES), default="fp32")
    parser.add_argument("--models", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--edits", nargs="*", choices=EDITS, default=list(EDITS), help="none: no edit rows")
    parser.add_argument("--targets", type=int, default=1, help="target rows beside the source row")
    parser.add_argument("--maps", action="store_true", help="also the word maps of every row (joint_maps.py)")
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per figure (the first also gives the peak)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    opts = parser.parse_args()
    device, dtype = torch.device(opts.device), DTYPES[opts.dtype]
    if device.type == "cpu" and any(os.environ.get(key) != value for key, value in EXACT_RSS.items()):
        os.execve(
            sys.executable,
            [sys.executable, "-m", "benchmarks.joint_attention", *sys.argv[1:]],
            {**os.environ, **EXACT_RSS},
        )
    if opts.threads:
        torch.set_num_threads(opts.threads)

    print(
        f"# Joint attention: {sys.platform}, torch {torch.__version__}, device {opts.device}, {opts.dtype}, "
        f"{torch.get_num_threads()} CPU threads, {os.cpu_count()} cores"
    )
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}")
    print(f"command: python -m benchmarks.joint_attention {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"\nOne call, a source row and {opts.targets} target(s); time = median of {opts.repeats} call(s); memory = "
        "peak over the memory in use before the call; explicit = reference_joint_attention (float32 maps), "
        "measured on the re-weight\n"
    )
    rows, map_rows = [], []
    for name in opts.models:
        shape = SHAPES[name]
        kernel = measure(shape, "inject", "kernel", opts.targets, device, dtype, opts.repeats)
        if opts.edits:
            explicit = measure(shape, EDITS[-1], "explicit", opts.targets, device, dtype, opts.repeats)
        for edit in opts.edits:
            fused = measure(shape, edit, "fused", opts.targets, device, dtype, opts.repeats)
            row = {"shape": shape, "rows": 1 + opts.targets, "edit": edit}
            rows.append({**row, "kernel": kernel, "fused": fused, "explicit": explicit})
            print(f"  measured {results_table(rows[-1:]).splitlines()[-1]}", file=sys.stderr, flush=True)
        if opts.maps:
            maps = measure(shape, "inject", "maps", opts.targets, device, dtype, opts.repeats)
            map_rows.append({"shape": shape, "rows": 1 + opts.targets, "kernel": kernel, "maps": maps})
    if rows:
        print(results_table(rows))
    if map_rows:
        print(
            f"\nWord maps (p2p_core.joint_maps.image_text_maps): {len(MAP_WORDS)} words on every row, "
            "against the unedited kernel call\n"
        )
        print(maps_table(map_rows))


if __name__ == "__main__":
    main()
