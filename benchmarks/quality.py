"""Quality of the demo models and of Prompt-to-Prompt on them, measured by a scene detector.

    .venv/bin/python -m benchmarks.quality                    # everything, both models, 100 seeds per row
    .venv/bin/python -m benchmarks.quality --part model --seeds 100
    .venv/bin/python -m benchmarks.quality --model dit        # the DiT demo model only

Both demo models (`--model`: the UNet, the DiT) get the same tables.

Every image comes from a real in-process ComfyUI running API-format graphs: the pack's
P2PDemoModelLoader and P2PDemoEmptyLatent, the stock CLIPTextEncode and KSampler, and the pack's
P2P nodes. Images are read from the sampled latents (pixel space: image = (latent + 1) / 2) and
scored by `demo.detect` (colour, shape, texture, background, object masks).

1. The model: prompts drawn by `demo.scenes`, one seed each; the fraction of prompted objects drawn
   with the prompted colour, shape and texture, of images with every object right, and of named
   backgrounds right.
2. Edits, each with Prompt-to-Prompt and with the naive baseline (the same seed, the target prompt
   alone), on two-object scenes with a named background (one seed each): word swap of a colour and
   of a shape (AttentionReplace), refine adding a texture word (AttentionRefine), the colour swap
   with LocalBlend (`--edits` adds the shape swap with LocalBlend), and a real image (a procedurally
   drawn picture: DDIMInvert, then the colour swap; the baseline samples the target prompt from the
   same inverted noise). Columns: edit success
   (every object of the target prompt detected right); the same over the seeds whose source image has
   every object of the source prompt right, and their number (what the edit does where the model drew
   the scene it edits; the baseline over the same seeds); object IoU: each source object's mask against
   the best-overlapping target object, mean over the source objects, where the object whose shape the
   edit swaps is taken in its new shape (that shape with the object's area and centroid: its own
   outline cannot be kept); mask IoU: the same against the source's own masks throughout; centroid
   shift (pixels) of the matched objects; background PSNR (outside both images' objects); and for
   the real image the reconstruction PSNR of the source branch.
3. Re-weight fader (Reweight 'red=c' on the first object's colour word; baseline: ComfyUI's own
   prompt weight '(red:c)'): the pixels of that colour against the source image, per c. (A texture
   word barely fades on this model: the causal text encoder carries it into the later tokens.)
"""

from __future__ import annotations

import argparse
import copy
import math
import multiprocessing
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from demo.detect import SceneDetection, detect, fit_shape, match
from demo.scenes import COLOUR_NAMES, SHAPES, Scene, sample_scenes
from devtools import harness as comfy_harness
from devtools.demo_graphs import DEMO_MODELS, Sampling, demo_loader, real_image_edit_graph, text_to_image_graph
from p2p_core.plans import SELF_LAYERS

from .piebench import psnr as psnr_of_mse
from .report import table


def run_images(graph: dict) -> torch.Tensor:
    """Run a graph and return its captured latent as images `[B, 3, H, W]` in [0, 1]."""
    captured = comfy_harness.captured_latents()
    captured.clear()
    comfy_harness.run_graph(graph)
    return ((captured["out"].float() + 1.0) / 2.0).clamp(0, 1)


def model_accuracy(seeds: int, s: Sampling, seed: int = 0, model: str = "unet") -> dict[str, float]:
    """Generate one image per prompt for `seeds` random prompts on demo model `model`; mean detector scores
    (see `match`)."""
    gen = torch.Generator().manual_seed(seed)
    scenes = sample_scenes(seeds, gen).scenes
    scores = []
    for i, scene in enumerate(scenes):
        image = run_images(text_to_image_graph(scene.caption(), i, s, model=model))[0]
        scores.append(match(scene, detect(image)))
    return {k: float(np.nanmean([r[k] for r in scores])) for k in scores[0]}


def _base(s: Sampling, batch: int = 1, model: str = "unet") -> dict:
    """Loader (of demo model `model`), empty negative and empty latent nodes shared by the edit graphs."""
    return {
        "model": demo_loader(model),
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": ""}},
        "latent": {"class_type": "P2PDemoEmptyLatent", "inputs": {"width": 32, "height": 32, "batch_size": batch}},
    }


def _ksampler(model: list, positive: list, seed: int, s: Sampling) -> dict:
    return {"class_type": "KSampler", "inputs": {
        "model": model, "positive": positive, "negative": ["negative", 0], "latent_image": ["latent", 0],
        "seed": seed, "steps": s.steps, "cfg": s.cfg, "sampler_name": s.sampler, "scheduler": s.scheduler,
        "denoise": 1.0}}


def p2p_graph(source: str, target: str, seed: int, s: Sampling, chain: list[tuple[str, dict]],
              model: str = "unet") -> dict:
    """Demo loader (of `model`) -> PromptPair -> the chained P2P nodes -> KSampler (batch-1 latent) -> capture."""
    graph = _base(s, model=model)
    graph["pair"] = {"class_type": "PromptPair", "inputs": {"clip": ["model", 1], "source": source, "target": target}}
    model = ["model", 0]
    for i, (class_type, inputs) in enumerate(chain):
        graph[f"edit{i}"] = {"class_type": class_type,
                             "inputs": {"model": model, "prompts": ["pair", 1], **inputs}}
        model = [f"edit{i}", 0]
    graph["sample"] = _ksampler(model, ["pair", 0], seed, s)
    graph["capture"] = {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": "out"}}
    return graph


def real_image_graph(image_name: str, source: str, target: str, s: Sampling, p2p: bool,
                     edit: dict, model: str = "unet") -> dict:
    """Demo model `model`'s real-image edit (`devtools.demo_graphs.real_image_edit_graph`): AttentionReplace
    pinned to the inversion (p2p) or the target prompt alone (baseline), the sample captured as `out`."""
    graph = real_image_edit_graph(demo_loader(model), image_name, source, target, s, "pinned" if p2p else "naive",
                                  [("AttentionReplace", edit)])
    graph["capture"] = {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": "out"}}
    return graph


def layout(source: SceneDetection, target: SceneDetection, reshaped: dict[str, str] | None = None
           ) -> tuple[float, float, float]:
    """How well the target image keeps the source's layout: the mean over the source objects of the best mask
    IoU with a target object (object IoU), the same against the source's own masks (mask IoU), and the mean
    centroid shift (pixels) of the matched pairs (NaN when none matched).

    `reshaped` maps the colour of each source object whose shape the edit changes to its new shape. Such an
    object cannot keep its own outline, so its object IoU is taken against its footprint in the new shape
    (`demo.detect.fit_shape`: the new shape with the object's area and centroid); its mask IoU against its
    own mask is bounded by the two outlines (about 0.75 for two shapes of this set in the same place).
    """
    reshaped = reshaped or {}
    ious, mask_ious, shifts = [], [], []
    for obj in source.objects:
        footprint = fit_shape(obj.mask, reshaped[obj.colour]) if obj.colour in reshaped else obj.mask
        overlap, best = max(((iou(footprint, t.mask), t) for t in target.objects), key=lambda x: x[0],
                            default=(0.0, None))
        ious.append(overlap)
        mask_ious.append(max((iou(obj.mask, t.mask) for t in target.objects), default=0.0))
        if best is not None and overlap > 0:
            shifts.append(math.dist(obj.centroid, best.centroid))
    mean = lambda v: float(np.mean(v)) if v else 0.0  # noqa: E731
    return mean(ious), mean(mask_ious), (float(np.mean(shifts)) if shifts else float("nan"))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two `[H, W]` bool masks (0 where both are empty)."""
    return float((a & b).sum() / max(1, (a | b).sum()))


def psnr(a: torch.Tensor, b: torch.Tensor, where: np.ndarray | None = None) -> float:
    """PSNR (dB, images in [0, 1], capped at 100) of `[3, H, W]` images, over the `[H, W]` pixels `where`."""
    err = ((a - b) ** 2).mean(0).numpy()
    return psnr_of_mse(float(err[where].mean()) if where is not None else float(err.mean()))


def background_psnr(a: torch.Tensor, b: torch.Tensor, da: SceneDetection, db: SceneDetection) -> float:
    """PSNR outside both images' objects, grown by one pixel."""
    fg = np.zeros(a.shape[1:], dtype=bool)
    for o in da.objects + db.objects:
        fg |= o.mask
    grown = fg.copy()
    grown[1:] |= fg[:-1]
    grown[:-1] |= fg[1:]
    grown[:, 1:] |= fg[:, :-1]
    grown[:, :-1] |= fg[:, 1:]
    return psnr(a, b, ~grown) if (~grown).any() else float("nan")


@dataclass
class EditRow:
    """Per-seed results of one edit with one method."""

    success: list[float] = field(default_factory=list)
    source_right: list[float] = field(default_factory=list)
    iou: list[float] = field(default_factory=list)
    mask_iou: list[float] = field(default_factory=list)
    shift: list[float] = field(default_factory=list)
    background: list[float] = field(default_factory=list)
    reconstruction: list[float] = field(default_factory=list)

    def add(self, source_scene: Scene, target_scene: Scene, src_img: torch.Tensor, tgt_img: torch.Tensor) -> None:
        src, tgt = detect(src_img), detect(tgt_img)
        self.success.append(match(target_scene, tgt)["all"])
        self.source_right.append(match(source_scene, src)["all"])
        reshaped = {a.colour: b.shape for a, b in zip(source_scene.objects, target_scene.objects, strict=True)
                    if a.shape != b.shape}
        iou, mask_iou, shift = layout(src, tgt, reshaped)
        self.iou.append(iou)
        self.mask_iou.append(mask_iou)
        self.shift.append(shift)
        self.background.append(background_psnr(src_img, tgt_img, src, tgt))

    def cells(self) -> list[str]:
        mean = lambda v: float(np.nanmean(v)) if len(v) and not np.all(np.isnan(v)) else float("nan")  # noqa: E731
        recon = f"{mean(self.reconstruction):.1f}" if self.reconstruction else ""
        kept = [ok for ok, right in zip(self.success, self.source_right, strict=True) if right]
        return [f"{mean(self.success):.0%}", f"{mean(kept):.0%} of {len(kept)}", f"{mean(self.iou):.2f}",
                f"{mean(self.mask_iou):.2f}", f"{mean(self.shift):.2f}", f"{mean(self.background):.1f}", recon]


def _other(options: tuple[str, ...], avoid: set[str], gen: torch.Generator) -> str:
    """A seeded choice from `options` outside `avoid`."""
    pool = [o for o in options if o not in avoid]
    return pool[int(torch.randint(len(pool), (1,), generator=gen))]


def edit_scenes(seeds: int, seed: int = 1) -> list[Scene]:
    """Two-object source scenes with a named background."""
    return sample_scenes(seeds, torch.Generator().manual_seed(seed), p_two=1.0, p_background=1.0).scenes


def colour_swap(scene: Scene, gen: torch.Generator) -> Scene:
    """The scene with its first object recoloured."""
    target = copy.deepcopy(scene)
    target.objects[0].colour = _other(COLOUR_NAMES, {o.colour for o in scene.objects} | {scene.background or ""}, gen)
    return target


def shape_swap(scene: Scene, gen: torch.Generator) -> Scene:
    """The scene with its first object reshaped."""
    target = copy.deepcopy(scene)
    target.objects[0].shape = _other(SHAPES, {scene.objects[0].shape}, gen)
    return target


def local_blend(source: Scene, target: Scene) -> dict:
    """LocalBlend's inputs for an edit of the first object: its colour and shape words in each prompt."""
    a, b = source.objects[0], target.objects[0]
    return {"source_words": f"{a.colour}, {a.shape}", "target_words": f"{b.colour}, {b.shape}", "threshold": 0.3}


def add_texture(scene: Scene) -> tuple[Scene, Scene]:
    """(source with a plain first object, target with it striped)."""
    source = copy.deepcopy(scene)
    source.objects[0].texture = "plain"
    target = copy.deepcopy(source)
    target.objects[0].texture = "striped"
    return source, target


WINDOWS = {"cross_replace": 0.8, "self_replace": 0.4}
"""The edit windows of Reweight on its own (the fader), which has no `self_layers`."""
REPLACE: dict[str, dict] = {"unet": WINDOWS, "dit": {**WINDOWS, "self_layers": "all"}}
"""AttentionReplace's and AttentionRefine's settings by demo model. The DiT's q/k go to the target in all its
joint blocks: when it had three (step 7100, 6 seeds), `self_layers` "coarse" (the first third, as on SD3: one
block) held too little of the layout: the colour swap's object IoU was 0.45 with "coarse", 0.61 "medium",
0.72 "all" (baseline 0.45)."""


EDITS = ("word swap: colour", "word swap: shape", "refine: add 'striped'", "word swap: colour + local blend",
         "real image: colour swap")
"""The edits measured by default."""
MORE_EDITS = ("word swap: shape + local blend",)
"""Edits measured where named (`--edits`): the shape swap at a short window keeps the other objects by the
local blend."""


def edit_benchmark(seeds: int, s: Sampling, edits: tuple[str, ...] = EDITS, share: tuple[int, int] = (0, 1),
                   model: str = "unet", settings: dict | None = None) -> dict[str, dict[str, EditRow]]:
    """Rows by edit (those of `EDITS` named in `edits`), then by method ('P2P', 'baseline'), on demo model
    `model`. `share` (k, n): only the seeds i with i % n == k (one worker's share: the scenes and edits stay
    those of the whole run). `settings`: AttentionReplace's and AttentionRefine's inputs (default
    `REPLACE[model]`)."""
    rows: dict[str, dict[str, EditRow]] = {}

    def row(edit: str, method: str) -> EditRow:
        return rows.setdefault(edit, {}).setdefault(method, EditRow())

    edit = settings or REPLACE[model]
    gen = torch.Generator().manual_seed(2)
    for i, scene in enumerate(edit_scenes(seeds)):
        recoloured, reshaped = colour_swap(scene, gen), shape_swap(scene, gen)
        if i % share[1] != share[0]:
            continue
        cases = [("word swap: colour", scene, recoloured, [("AttentionReplace", edit)]),
                 ("word swap: shape", scene, reshaped, [("AttentionReplace", edit)]),
                 ("refine: add 'striped'", *add_texture(scene), [("AttentionRefine", edit)]),
                 ("word swap: colour + local blend", scene, recoloured,
                  [("AttentionReplace", edit), ("LocalBlend", local_blend(scene, recoloured))]),
                 ("word swap: shape + local blend", scene, reshaped,
                  [("AttentionReplace", edit), ("LocalBlend", local_blend(scene, reshaped))])]
        baselines: dict[str, torch.Tensor] = {}
        for name, source, target, chain in (c for c in cases if c[0] in edits):
            out = run_images(p2p_graph(source.caption(), target.caption(), i, s, chain, model))
            row(name, "P2P").add(source, target, out[0], out[1])
            caption = target.caption()
            if caption not in baselines:
                baselines[caption] = run_images(text_to_image_graph(caption, i, s, model=model))[0]
            row(name, "baseline").add(source, target, out[0], baselines[caption])
        if "real image: colour swap" in edits:
            real_image(i, scene, recoloured, s, row, edit, model)
        if (i + 1) % 10 == 0:
            print(f"edits: seed {i + 1}/{seeds}", file=sys.stderr, flush=True)
    return rows


def _edit_worker(args: tuple[int, Sampling, tuple[str, ...], tuple[int, int], str, dict | None]
                 ) -> dict[str, dict[str, EditRow]]:
    comfy_harness.boot()
    return edit_benchmark(*args)


def edits_in_parallel(seeds: int, s: Sampling, edits: tuple[str, ...], workers: int, model: str = "unet",
                      settings: dict | None = None) -> dict[str, dict[str, EditRow]]:
    """`edit_benchmark` with the seeds shared among `workers` processes (each its own ComfyUI); the same
    per-seed results as one process."""
    if workers <= 1:
        return edit_benchmark(seeds, s, edits, model=model, settings=settings)
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_edit_worker, [(seeds, s, edits, (k, workers), model, settings) for k in range(workers)])
    rows: dict[str, dict[str, EditRow]] = {}
    for part in parts:
        for edit, by in part.items():
            for method, r in by.items():
                merged = rows.setdefault(edit, {}).setdefault(method, EditRow())
                for f in fields(EditRow):
                    getattr(merged, f.name).extend(getattr(r, f.name))
    return rows


def real_image(i: int, scene: Scene, target: Scene, s: Sampling, row, settings: dict, model: str = "unet") -> None:
    """Draw `scene` procedurally (never generated), invert it, edit it with P2P (AttentionReplace with
    `settings`) and with the baseline."""
    import folder_paths
    from PIL import Image

    from demo.scenes import draw_scene

    gen = torch.Generator().manual_seed(1000 + i)
    drawn = sample_scenes(1, gen, p_two=1.0, p_background=1.0)
    # Keep this scene's layout from the generator, but give it `scene`'s attributes.
    scene_layout = drawn.masks[0]
    centres, radii = [], []
    for m in scene_layout:
        ys, xs = torch.nonzero(m, as_tuple=True)
        centres.append(((xs.float().mean() + 0.5).item(), (ys.float().mean() + 0.5).item()))
        radii.append(max(3.5, (m.sum().item() / math.pi) ** 0.5))
    picture = draw_scene(scene, centres, radii).images[0]
    name = f"p2p_quality_{i}.png"
    array = (picture.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(array).save(Path(folder_paths.get_input_directory()) / name)
    picture = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    for method, p2p in (("P2P", True), ("baseline", False)):
        out = run_images(real_image_graph(name, scene.caption(), target.caption(), s, p2p, settings, model))
        edited = out[1] if p2p else out[0]
        r = row("real image: colour swap", method)
        r.add(scene, target, picture, edited)
        if p2p:
            r.reconstruction.append(psnr(out[0], picture))


FADER_WEIGHTS = (-2.0, -1.0, 0.0, 0.5, 1.0, 2.0, 4.0)


def fader(seeds: int, s: Sampling, weights: tuple[float, ...] = FADER_WEIGHTS,
          share: tuple[int, int] = (0, 1), model: str = "unet") -> dict[str, list[list[float]]]:
    """Effect strength of re-weighting the first object's colour word, per weight, per seed: the pixels of
    that colour against the source image's (1 = unchanged, 0 = gone). Reweight (P2P) against ComfyUI's own
    prompt weight '(red:c)' on the prompt alone (baseline). A seed whose source draws none of that colour
    has no strength to measure and is left out (a weak model's: the DiT demo misses the colour in 9 %).
    `share` and `model` as in `edit_benchmark`."""
    out: dict[str, list[list[float]]] = {"P2P": [[] for _ in weights], "baseline": [[] for _ in weights]}
    for i, scene in enumerate(edit_scenes(seeds, seed=3)):
        if i % share[1] != share[0]:
            continue
        caption, word = scene.caption(), scene.objects[0].colour
        sweep = "|".join(f"{w:g}" for w in weights)
        images = run_images(p2p_graph(caption, "\n".join([caption] * len(weights)), i, s,
                                      [("Reweight", {"weights": f"{word}={sweep}", **WINDOWS})], model))
        reference = _colour_pixels(word, images[0])
        if reference == 0:
            print(f"fader: seed {i + 1}/{seeds} left out: its source has no {word} object", file=sys.stderr)
            continue
        for k, image in enumerate(images[1:]):
            out["P2P"][k].append(_colour_pixels(word, image) / reference)
        for k, w in enumerate(weights):
            weighted = caption.replace(f" {word} ", f" ({word}:{w:g}) ", 1)
            image = run_images(text_to_image_graph(weighted, i, s, model=model))[0]
            out["baseline"][k].append(_colour_pixels(word, image) / reference)
        per_seed = {m: [round(v[-1], 4) for v in per_w] for m, per_w in out.items()}
        print(f"fader: seed {i + 1}/{seeds} {per_seed}", file=sys.stderr, flush=True)
    return out


def _fader_worker(args: tuple[int, Sampling, tuple[int, int], str]) -> dict[str, list[list[float]]]:
    comfy_harness.boot()
    seeds, s, share, model = args
    return fader(seeds, s, share=share, model=model)


def fader_in_parallel(seeds: int, s: Sampling, workers: int, model: str = "unet"
                      ) -> tuple[dict[str, list[float]], int]:
    """Mean effect strength per weight (see `fader`), the seeds shared among `workers` processes, and the
    number of seeds measured (those whose source draws the colour)."""
    if workers <= 1:
        parts = [fader(seeds, s, model=model)]
    else:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_fader_worker, [(seeds, s, (k, workers), model) for k in range(workers)])
    means = {m: [float(np.mean([v for part in parts for v in part[m][k]])) for k in range(len(FADER_WEIGHTS))]
             for m in parts[0]}
    return means, sum(len(part["P2P"][0]) for part in parts)


def _colour_pixels(colour: str, image: torch.Tensor) -> int:
    """Pixels of the detected objects of that colour."""
    return int(sum(o.mask.sum() for o in detect(image).objects if o.colour == colour))


def report(model: str, part: str, s: Sampling, seeds: int, edits: tuple[str, ...], workers: int,
           overrides: dict | None = None) -> None:
    """Print the tables of `part` ("model", "edits", "fader" or "all") for demo model `model`; the edits with
    AttentionReplace's and AttentionRefine's inputs `REPLACE[model]`, those of `overrides` (e.g.
    `cross_replace`, `self_layers`) changed."""
    title = {"unet": "UNet (SD-style)", "dit": "DiT (SD3-style MMDiT)"}[model]
    settings = f"{seeds} seeds, {s.sampler}/{s.scheduler}, {s.steps} steps, cfg {s.cfg}"
    if part in ("model", "all"):
        acc = model_accuracy(seeds, s, model=model)
        print(f"## The demo model: {title} ({settings})\n")
        names = {"colour": "colour", "shape": "shape", "texture": "texture", "colour_shape": "colour + shape",
                 "all": "every object right", "background": "background"}
        print(table(["prompted attribute present", "fraction"], [[names[k], f"{v:.1%}"] for k, v in acc.items()]))
    if part in ("edits", "all"):
        inputs = REPLACE[model] | (overrides or {})
        rows = edits_in_parallel(seeds, s, edits, workers, model, inputs)
        edit = ", ".join(f"{k} {v}" for k, v in inputs.items())
        print(f"\n## Edits on the {title} ({settings}; {edit})\n")
        header = ["edit", "method", "edit success", "success, source right", "object IoU", "mask IoU",
                  "centroid shift px", "background PSNR dB", "reconstruction PSNR dB"]
        print(table(header, [[edit, method, *r.cells()] for edit, by in rows.items() for method, r in by.items()]))
    if part in ("fader", "all"):
        result, measured = fader_in_parallel(seeds, s, workers, model)
        print(f"\n## Re-weight fader on the {title}: colour word x c, object pixels against the source ({settings};"
              f" {measured} measured, the others' source has no object of that colour)\n")
        print(table(["method", *[f"c = {w:g}" for w in FADER_WEIGHTS]],
                    [[m, *[f"{v:.3f}" for v in vals]] for m, vals in result.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["model", "edits", "fader", "all"], default="all")
    parser.add_argument("--model", nargs="+", choices=list(DEMO_MODELS), default=list(DEMO_MODELS),
                        help="the demo models to measure, one set of tables each (default: both)")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--steps", type=int, default=Sampling.steps)
    parser.add_argument("--cfg", type=float, default=Sampling.cfg)
    parser.add_argument("--edits", nargs="+", choices=EDITS + MORE_EDITS, default=EDITS, metavar="EDIT",
                        help=f"only these edits (default: all of {', '.join(map(repr, EDITS))}; also "
                             f"{', '.join(map(repr, MORE_EDITS))})")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the seeds of the edits and the fader (the same results)")
    parser.add_argument("--cross-replace", type=float,
                        help="the edits' AttentionReplace/AttentionRefine cross_replace (default: 0.8); on the DiT "
                             "the window of the source's image q/k, shorter for a shape swap (README)")
    parser.add_argument("--self-layers", choices=list(SELF_LAYERS),
                        help="the edits' AttentionReplace/AttentionRefine self_layers (default: coarse on the UNet, "
                             "all on the DiT); on the DiT the blocks that take the source's image q/k")
    opts = parser.parse_args()
    s = Sampling(steps=opts.steps, cfg=opts.cfg)
    comfy_harness.boot()
    for k, model in enumerate(opts.model):
        if k:
            print()
        overrides = {"cross_replace": opts.cross_replace, "self_layers": opts.self_layers}
        report(model, opts.part, s, opts.seeds, tuple(opts.edits), opts.workers,
               {name: v for name, v in overrides.items() if v is not None})


if __name__ == "__main__":
    main()
