"""PIE-Bench (Ju et al. 2024, "PnP Inversion") on your own model, through a running ComfyUI.

    python -m benchmarks.piebench PIE-Bench_v1 --model v1-5-pruned-emaonly.safetensors --server http://127.0.0.1:8188
    python -m benchmarks.piebench --make-demo-set out/piebench_demo          # a small set from the demo scenes
    python -m benchmarks.piebench out/piebench_demo --model demo --method p2p pinned naive --out out/piebench.json

The folder is in PIE-Bench's layout: `mapping_file.json` (per edit: `image_path` under `annotation_images/`,
`original_prompt`, `editing_prompt` with the edited words in [brackets], `blended_word` "source-word target-word",
`mask` run-length encoded) and the images. Every edit goes through the server's HTTP API as the frontend sends it:
the image is uploaded (POST /upload/image), a graph is queued (POST /prompt: LoadImage -> VAEEncode -> DDIMInvert
-> the edit -> KSamplerAdvanced without added noise -> VAEDecode -> SaveImage) and the result is fetched (GET
/history, GET /view). The edit is the one PIE-Bench ran for its P2P rows: AttentionRefine (cross-attention
replaced for the first 0.4 of the steps, self-attention for 0.6), LocalBlend on the blended words and Reweight
of the target word x2, cfg 7.5, 50 steps. `--method`:

- `p2p`: plain P2P sampled from the inverted noise; the source branch drifts from the photo (PIE-Bench's "DDIM").
- `pinned`: the same with the source branch pinned to the inversion (reconstructs the photo at cfg 7.5).
- `naive`: the target prompt alone sampled from the inverted noise (no P2P): the baseline.

Metrics, as PIE-Bench's evaluation defines them (edited image against the source image): background PSNR, MSE and
SSIM (always: both images multiplied by the background 1 - mask, the figure over the whole image, SSIM with the
11x11 Gaussian window); LPIPS (squeeze) of the background, CLIP similarity of the target prompt with the whole
edited image and with its edited region, and the structure distance (DINO ViT-B/8 self-similarity of keys) when
their packages and weights are installed; otherwise the table says which are skipped and why.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import torch
from PIL import Image

from demo.scenes import BACKGROUND_NAMES, COLOUR_NAMES, SHAPES, Scene, SceneObject, draw_scene
from devtools.demo_graphs import DEMO_LOADER, REAL_IMAGE_METHODS, Sampling, real_image_edit_graph
from devtools.server import ComfyClient, ServerGraphError

from .report import table

METRICS = ("structure", "psnr", "lpips", "mse", "ssim", "clip_whole", "clip_edited")
"""The figures of PIE-Bench's table, in its column order."""
HEADER = ["method", "Structure distance x10^3", "PSNR", "LPIPS x10^3", "MSE x10^4", "SSIM x10^2", "CLIP whole",
          "CLIP edited"]
SCALE = {"structure": 1e3, "psnr": 1.0, "lpips": 1e3, "mse": 1e4, "ssim": 1e2, "clip_whole": 1.0,
         "clip_edited": 1.0}
PUBLISHED = {
    "P2P + DDIM (PIE-Bench)": (69.43, 17.87, 208.80, 219.88, 71.14, 25.01, 22.44),
    "P2P + null-text (PIE-Bench)": (13.44, 27.03, 60.67, 35.86, 84.11, 24.75, 21.86),
    "P2P + Direct Inversion (PIE-Bench)": (11.65, 27.22, 54.55, 32.86, 84.76, 25.02, 22.10),
}
"""The P2P rows of PIE-Bench's table (Ju et al. 2024, Table 1; SD 1.4, 700 images), scaled as HEADER says."""
PSNR_CAP = 100.0
"""PSNR of identical backgrounds (MSE 0), dB."""


@dataclass
class PieEdit:
    """One entry of mapping_file.json: the image, the prompts (brackets removed), the blended words (source word,
    target word; None when the entry has none) and the edit mask (run-length encoded, see `decode_mask`)."""

    key: str
    image: Path
    source: str
    target: str
    blended: tuple[str, str] | None
    mask_rle: list[int]
    editing_type: str


def load_mapping(folder: Path) -> list[PieEdit]:
    """The edits of a PIE-Bench folder (`mapping_file.json`, images under `annotation_images/`)."""
    mapping = folder / "mapping_file.json"
    if not mapping.is_file():
        raise SystemExit(f"{folder}: no mapping_file.json (a PIE-Bench folder holds it beside annotation_images/)")
    edits = []
    for key, item in json.loads(mapping.read_text()).items():
        missing = [f for f in ("image_path", "original_prompt", "editing_prompt", "mask") if f not in item]
        if missing:
            raise SystemExit(f"{mapping}: entry {key!r} has no {', '.join(missing)}")
        words = item.get("blended_word", "").split()
        if words and len(words) < 2:
            raise SystemExit(f"{mapping}: entry {key!r}: blended_word {item['blended_word']!r} needs a source and "
                             "a target word ('cat dog')")
        image = folder / "annotation_images" / item["image_path"]
        if not image.is_file():
            raise SystemExit(f"{mapping}: entry {key!r}: image {image} is missing")
        edits.append(PieEdit(key, image, _unbracket(item["original_prompt"]), _unbracket(item["editing_prompt"]),
                             (words[0], words[1]) if words else None, list(item["mask"]),
                             str(item.get("editing_type_id", ""))))
    return edits


def _unbracket(prompt: str) -> str:
    return prompt.replace("[", "").replace("]", "")


def decode_mask(rle: list[int], shape: tuple[int, int], border: bool = True) -> np.ndarray:
    """PIE-Bench's run-length code -> the edit mask `[H, W]` bool.

    `rle` = [start_0, length_0, start_1, length_1, ...]: runs of edited pixels over the image flattened row by row
    (index y * W + x); a run past the end stops there. With `border` (as PIE-Bench decodes it, "to avoid annotation
    errors in boundary") the first and last rows and columns count as edited too.
    """
    if len(rle) % 2:
        raise ValueError(f"mask: {len(rle)} numbers, not (start, length) pairs")
    size = shape[0] * shape[1]
    flat = np.zeros(size, dtype=bool)
    for start, length in zip(rle[0::2], rle[1::2], strict=True):
        if start < 0 or length < 0 or start >= size:
            raise ValueError(f"mask: run ({start}, {length}) is outside a {shape[0]}x{shape[1]} image")
        flat[start:start + length] = True
    mask = flat.reshape(shape)
    if border:
        mask[[0, -1], :] = True
        mask[:, [0, -1]] = True
    return mask


def encode_mask(mask: np.ndarray) -> list[int]:
    """The edit mask `[H, W]` bool -> PIE-Bench's run-length code (see `decode_mask`, border=False inverts it)."""
    flat = np.concatenate([[False], mask.reshape(-1).astype(bool), [False]])
    edges = np.flatnonzero(flat[1:] != flat[:-1])  # starts and ends of the runs, alternating
    starts, ends = edges[0::2], edges[1::2]
    return [int(v) for pair in zip(starts, ends - starts, strict=True) for v in pair]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image -> `[3, H, W]` float in [0, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def background_mse(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor) -> float:
    """MSE of the background as PIE-Bench computes it: both images multiplied by `keep` (1 outside the edit mask),
    the mean over the whole image, MSE = sum_{c,y,x} keep_yx (a - b)^2 / (3 H W).

    edited, source: `[3, H, W]` in [0, 1]; keep: `[H, W]` in {0, 1}.
    """
    return float((((edited - source) * keep) ** 2).mean())


def psnr(mse: float) -> float:
    """10 log10(1 / MSE) dB for images in [0, 1]; PSNR_CAP for MSE 0."""
    return PSNR_CAP if mse <= 10.0 ** (-PSNR_CAP / 10.0) else 10.0 * math.log10(1.0 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 2-D Gaussian window `[size, size]` of SSIM (Wang et al. 2004: 11x11, sigma 1.5)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM of `[3, H, W]` images in [0, 1] (data range 1), every channel, over the positions where the
    Gaussian window fits:

        SSIM = (2 mu_a mu_b + C1)(2 sigma_ab + C2) / ((mu_a^2 + mu_b^2 + C1)(sigma_a^2 + sigma_b^2 + C2)),

    mu, sigma the window-weighted means, variances and covariance, C1 = 0.01^2, C2 = 0.03^2.
    """
    if min(a.shape[-2:]) < window:
        raise ValueError(f"ssim: a {a.shape[-2]}x{a.shape[-1]} image is smaller than the {window}x{window} window")
    kernel = gaussian_window(window, sigma)[None, None].expand(a.shape[0], 1, window, window)
    x, y = a.double()[None], b.double()[None]

    def blur(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(t, kernel, groups=a.shape[0])

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(value.mean())


def background_ssim(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor) -> float:
    """SSIM of the two images multiplied by `keep` (PIE-Bench's "SSIM of the unedited part")."""
    return ssim(edited * keep, source * keep)


@dataclass
class Scorer:
    """A metric that needs a model: `score(edited, source, edited_keep, target_prompt)` or None with `reason`."""

    score: Callable[..., float] | None
    reason: str = ""


def lpips_scorer(device: str) -> Scorer:
    """LPIPS (squeeze, as PIE-Bench) of the backgrounds, images in [-1, 1]; needs `lpips` and torchvision's
    SqueezeNet 1.1 weights in the torch hub cache."""
    try:
        import lpips
    except ImportError:
        return Scorer(None, "the `lpips` package is not installed (pip install lpips)")
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if not list(checkpoints.glob("squeezenet1_1-*.pth")):
        return Scorer(None, f"torchvision's SqueezeNet 1.1 weights are not in {checkpoints}")
    model = lpips.LPIPS(net="squeeze", verbose=False).to(device).eval()

    def score(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor, prompt: str) -> float:
        with torch.no_grad():
            pair = [(t * keep * 2.0 - 1.0)[None].to(device) for t in (edited, source)]
            return float(model(*pair))

    return Scorer(score)


CLIP_MODEL = "openai/clip-vit-large-patch14"


def clip_scorer(device: str) -> tuple[Scorer, Scorer]:
    """CLIP similarity 100 * max(cos(image, text), 0) of the target prompt with the whole edited image and with its
    edited region (the image multiplied by the mask), CLIP ViT-L/14 as PIE-Bench; needs `transformers` and the
    weights in the Hugging Face cache."""
    try:
        from transformers import CLIPModel, CLIPProcessor
    except ImportError:
        skipped = Scorer(None, "the `transformers` package is not installed")
        return skipped, skipped
    try:
        model = CLIPModel.from_pretrained(CLIP_MODEL, local_files_only=True).to(device).eval()
        processor = CLIPProcessor.from_pretrained(CLIP_MODEL, local_files_only=True)
    except OSError:
        skipped = Scorer(None, f"the {CLIP_MODEL} weights are not in the Hugging Face cache")
        return skipped, skipped

    def similarity(image: torch.Tensor, prompt: str) -> float:
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        inputs = processor(text=[prompt], images=[pixels], return_tensors="pt", padding=True).to(device)
        with torch.no_grad():
            out = model(**inputs)
        cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
        return float(100.0 * cos.clamp(min=0))

    def whole(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor, prompt: str) -> float:
        return similarity(edited, prompt)

    def edited_part(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor, prompt: str) -> float:
        return similarity(edited * (1.0 - keep), prompt)

    return Scorer(whole), Scorer(edited_part)


DINO_CHECKPOINT = "dino_vitbase8_pretrain.pth"


def structure_scorer(device: str) -> Scorer:
    """Structure distance (Tumanyan et al. 2022, as PIE-Bench): the MSE between the two whole images' self-similarity
    matrices of DINO ViT-B/8's last-layer keys, cos(k_i, k_j) over the tokens i, j (k = every head's key of a
    token, concatenated); images resized to 224 px on the short side, ImageNet-normalised. Needs the DINO hub
    repository and its weights in the torch hub cache."""
    hub = Path(torch.hub.get_dir())
    repo = hub / "facebookresearch_dino_main"
    if not (repo / "hubconf.py").is_file() or not (hub / "checkpoints" / DINO_CHECKPOINT).is_file():
        return Scorer(None, f"DINO ViT-B/8 (facebookresearch/dino and {DINO_CHECKPOINT}) is not in {hub}")
    model = torch.hub.load(str(repo), "dino_vitb8", source="local").to(device).eval()
    keys: list[torch.Tensor] = []
    model.blocks[-1].attn.qkv.register_forward_hook(lambda module, args, out: keys.append(out))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def self_similarity(image: torch.Tensor) -> torch.Tensor:
        h, w = image.shape[-2:]
        scale = 224.0 / min(h, w)
        size = (round(h * scale), round(w * scale))
        x = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
        keys.clear()
        with torch.no_grad():
            model(((x - mean) / std)[None].to(device))
        qkv = keys[0][0]  # [T, 3 * D]: queries, keys, values of every head
        k = qkv.reshape(qkv.shape[0], 3, -1)[:, 1]  # [T, D], the heads' keys side by side
        k = torch.nn.functional.normalize(k, dim=-1)
        return k @ k.T

    def score(edited: torch.Tensor, source: torch.Tensor, keep: torch.Tensor, prompt: str) -> float:
        return float(torch.nn.functional.mse_loss(self_similarity(edited), self_similarity(source)))

    return Scorer(score)


def model_scorers(device: str) -> dict[str, Scorer]:
    """The metrics that need models, by METRICS name; each skipped with its reason when it cannot run here."""
    clip_whole, clip_edited = clip_scorer(device)
    return {"structure": structure_scorer(device), "lpips": lpips_scorer(device), "clip_whole": clip_whole,
            "clip_edited": clip_edited}


def measure(edited: torch.Tensor, source: torch.Tensor, mask: np.ndarray, target: str,
            scorers: dict[str, Scorer]) -> dict[str, float]:
    """Every metric of one edit (PIE-Bench's definitions; NaN for the skipped ones). edited, source: `[3, H, W]`
    in [0, 1]; mask: `[H, W]` bool, True where the edit may change the image."""
    keep = torch.from_numpy(~mask).float()
    mse = background_mse(edited, source, keep)
    figures = {"psnr": psnr(mse), "mse": mse, "ssim": background_ssim(edited, source, keep)}
    for name, scorer in scorers.items():
        figures[name] = scorer.score(edited, source, keep, target) if scorer.score else float("nan")
    return {name: figures[name] for name in METRICS}


@dataclass
class EditSettings:
    """The edit of every entry: PIE-Bench's P2P settings by default."""

    cross_replace: float = 0.4
    self_replace: float = 0.6
    local_blend: bool = True
    threshold: float = 0.3
    reweight: float = 2.0


def edit_chain(edit: PieEdit, e: EditSettings) -> list[tuple[str, dict]]:
    """AttentionRefine, then (with blended words) Reweight of the target word and LocalBlend on the two words."""
    chain = [("AttentionRefine", {"cross_replace": e.cross_replace, "self_replace": e.self_replace})]
    if edit.blended is not None:
        source_word, target_word = edit.blended
        if e.reweight != 1.0:
            chain.append(("Reweight", {"weights": f"{target_word}={e.reweight:g}", "cross_replace": e.cross_replace,
                                       "self_replace": e.self_replace}))
        if e.local_blend:
            chain.append(("LocalBlend", {"source_words": source_word, "target_words": target_word,
                                         "threshold": e.threshold}))
    return chain


def loader_node(client: ComfyClient, model: str) -> dict:
    """The built-in demo model (`demo`) or a checkpoint the server lists for CheckpointLoaderSimple."""
    if model == "demo":
        return DEMO_LOADER
    info = client.get("/object_info/CheckpointLoaderSimple").json()
    spec = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    # [names, options] in the classic schema; ["COMBO", {"options": names}] in the newer one
    names = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
    if model not in names:
        raise SystemExit(f"--model: the server has no checkpoint {model!r} (it has: {', '.join(names) or 'none'})")
    return {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": model}}


def run_edit(client: ComfyClient, loader: dict, image_name: str, edit: PieEdit, method: str, s: Sampling,
             e: EditSettings) -> torch.Tensor:
    """One edit on the server: the edited image (the batch's last) `[3, H, W]` in [0, 1]."""
    graph = real_image_edit_graph(loader, image_name, edit.source, edit.target, s, method, edit_chain(edit, e))
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["model", 2]}}
    graph["save"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0],
                                                           "filename_prefix": f"piebench/{method}/{edit.key}"}}
    images = client.images(client.run(graph, timeout=3600.0))
    return to_tensor(images[-1])


def benchmark(client: ComfyClient, edits: list[PieEdit], model: str, methods: list[str], s: Sampling,
              e: EditSettings, scorers: dict[str, Scorer]) -> list[dict]:
    """Every edit with every method: one record per (edit, method) with the key, the method and METRICS (an edit
    the server refuses is reported on stderr and recorded with its error, no figures)."""
    try:
        client.get("/system_stats").raise_for_status()
    except requests.RequestException as error:
        raise SystemExit(f"--server: no ComfyUI answers at {client.url} ({error.__class__.__name__}); start it "
                         "with this pack installed") from None
    loader = loader_node(client, model)
    records = []
    for n, edit in enumerate(edits, 1):
        picture = Image.open(edit.image).convert("RGB")
        source = to_tensor(picture)
        mask = decode_mask(edit.mask_rle, (source.shape[1], source.shape[2]))
        name = client.upload_image(picture, f"piebench_{edit.key}.png")
        for method in methods:
            record = {"key": edit.key, "method": method, "editing_type": edit.editing_type}
            try:
                edited = run_edit(client, loader, name, edit, method, s, e)
            except ServerGraphError as error:
                print(f"{edit.key} ({method}): the server refused the edit: {error.message}", file=sys.stderr)
                records.append({**record, "error": error.message})
                continue
            if edited.shape != source.shape:
                raise SystemExit(f"{edit.image}: the edited image is {edited.shape[2]}x{edited.shape[1]}, the source "
                                 f"{source.shape[2]}x{source.shape[1]} (give images whose sides are multiples of 8)")
            records.append({**record, **measure(edited, source, mask, edit.target, scorers)})
        print(f"piebench: {n}/{len(edits)} edits", file=sys.stderr, flush=True)
    return records


def summary(records: list[dict], methods: list[str], label: str) -> list[list[str]]:
    """The table's rows: the published P2P rows, then each method's means over its edits (NaN-free figures)."""
    rows = [[name, *(f"{v:.2f}" for v in values)] for name, values in PUBLISHED.items()]
    for method in methods:
        done = [r for r in records if r["method"] == method and "error" not in r]
        cells = []
        for metric in METRICS:
            values = [r[metric] for r in done if not math.isnan(r[metric])]
            cells.append(f"{np.mean(values) * SCALE[metric]:.2f}" if values else "skipped")
        rows.append([f"{method} ({label}, {len(done)} images)", *cells])
    return rows


def write_records(records: list[dict], path: Path) -> None:
    """Per-edit figures as JSON (a list of records) or CSV (one row each), by the file's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        columns = ["key", "method", "editing_type", *METRICS, "error"]
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(records)
    else:
        path.write_text(json.dumps(records, indent=1))


DEMO_SIZE = 32
"""The demo model's image size (pixels)."""


def _pick(options: tuple[str, ...], avoid: set[str], gen: torch.Generator) -> str:
    pool = [o for o in options if o not in avoid]
    return pool[int(torch.randint(len(pool), (1,), generator=gen))]


def make_demo_set(folder: Path, count: int = 8, seed: int = 0, size: int = DEMO_SIZE) -> list[str]:
    """A PIE-Bench-format set drawn from the demo scenes (seeded): one- and two-object scenes on a named
    background, alternately a colour swap and a shape swap of the first object; the blended words are the edited
    word before and after, the mask is the first object's true mask in the source united with the target's (the
    same place and size), run-length encoded as PIE-Bench's. Returns the entries' keys."""
    gen = torch.Generator().manual_seed(seed)
    images = folder / "annotation_images"
    mapping = {}
    for i in range(count):
        two, colour_edit = i % 2 == 1, i % 4 < 2
        background = _pick(BACKGROUND_NAMES, set(), gen)
        objects: list[SceneObject] = []
        for _ in range(1 + two):
            colour = _pick(COLOUR_NAMES, {background} | {o.colour for o in objects}, gen)
            objects.append(SceneObject(colour, _pick(SHAPES, {o.shape for o in objects}, gen)))
        scene = Scene(objects, background)
        target = copy.deepcopy(scene)
        edited = target.objects[0]
        if colour_edit:
            old = edited.colour
            edited.colour = _pick(COLOUR_NAMES, {background} | {o.colour for o in objects}, gen)
            words, kind = (old, edited.colour), ("6", "change_attribute_color")
            instruction = f"Make the {old} {edited.shape} {edited.colour}"
        else:
            old = edited.shape
            edited.shape = _pick(SHAPES, {o.shape for o in objects}, gen)
            words, kind = (old, edited.shape), ("1", "change_object")
            instruction = f"Turn the {edited.colour} {old} into a {edited.shape}"
        unit = size / 32.0
        u = torch.rand(2, 3, generator=gen)
        if two:  # each object in its own half, left and right
            radii = [(4.5 + 2.0 * float(u[k, 0])) * unit for k in range(2)]
            centres = [(float(size / 4 + k * size / 2 + (u[k, 1] - 0.5) * 2 * unit),
                        float(radii[k] + 1 + u[k, 2] * (size - 2 * radii[k] - 2))) for k in range(2)]
        else:
            r = (7.0 + 3.0 * float(u[0, 0])) * unit
            radii = [r]
            centres = [(float(r + 1 + u[0, 1] * (size - 2 * r - 2)), float(r + 1 + u[0, 2] * (size - 2 * r - 2)))]
        drawn = draw_scene(scene, centres, radii, size)
        mask = (drawn.masks[0, 0] | draw_scene(target, centres, radii, size).masks[0, 0]).numpy()
        key = f"{i:012d}"
        image_path = f"{kind[0]}_{kind[1]}/{key}.png"
        (images / image_path).parent.mkdir(parents=True, exist_ok=True)
        pixels = (drawn.images[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(images / image_path)
        caption = target.caption()
        mapping[key] = {
            "image_path": image_path,
            "original_prompt": scene.caption(),
            "editing_prompt": caption.replace(f" {words[1]} ", f" [{words[1]}] ", 1),
            "editing_instruction": instruction,
            "editing_type_id": kind[0],
            "blended_word": f"{words[0]} {words[1]}",
            "mask": encode_mask(mask),
        }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mapping_file.json").write_text(json.dumps(mapping, indent=1))
    return list(mapping)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="?", help="a folder in PIE-Bench's layout (mapping_file.json)")
    parser.add_argument("--model", default="demo",
                        help="a checkpoint name the server lists (CheckpointLoaderSimple), or 'demo' (built in)")
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="the running ComfyUI (with this pack)")
    parser.add_argument("--method", nargs="+", choices=REAL_IMAGE_METHODS, default=["pinned"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=7.5)
    parser.add_argument("--sampler", default="euler", help="euler is DDIM's update on eps models")
    parser.add_argument("--scheduler", default=None,
                        help="default: ddim_uniform on a checkpoint (PIE-Bench's DDIM schedule), simple on the demo")
    parser.add_argument("--cross-replace", type=float, default=EditSettings.cross_replace)
    parser.add_argument("--self-replace", type=float, default=EditSettings.self_replace)
    parser.add_argument("--no-local-blend", action="store_true", help="no LocalBlend on the blended words")
    parser.add_argument("--threshold", type=float, default=EditSettings.threshold, help="LocalBlend's threshold")
    parser.add_argument("--reweight", type=float, default=EditSettings.reweight,
                        help="the target blended word's attention factor (1: no Reweight)")
    parser.add_argument("--types", nargs="+", help="only these editing_type_id values (PIE-Bench: 0-9)")
    parser.add_argument("--limit", type=int, help="only the first N edits")
    parser.add_argument("--device", default="cpu", help="where the metric models (LPIPS, CLIP, DINO) run")
    parser.add_argument("--out", type=Path, help="per-image figures: .json or .csv")
    parser.add_argument("--make-demo-set", type=Path, metavar="DIR",
                        help="write a PIE-Bench-format set from the demo scenes to DIR and stop")
    parser.add_argument("--demo-count", type=int, default=8)
    parser.add_argument("--demo-seed", type=int, default=0)
    opts = parser.parse_args(argv)
    if opts.make_demo_set:
        keys = make_demo_set(opts.make_demo_set, opts.demo_count, opts.demo_seed)
        print(f"wrote {len(keys)} edits to {opts.make_demo_set / 'mapping_file.json'}")
        return
    if opts.data is None:
        parser.error("give a PIE-Bench folder (or --make-demo-set DIR)")
    edits = load_mapping(opts.data)
    if opts.types:
        edits = [e for e in edits if e.editing_type in opts.types]
    edits = edits[: opts.limit]
    scheduler = opts.scheduler or ("simple" if opts.model == "demo" else "ddim_uniform")
    s = Sampling(steps=opts.steps, cfg=opts.cfg, sampler=opts.sampler, scheduler=scheduler)
    e = EditSettings(opts.cross_replace, opts.self_replace, not opts.no_local_blend, opts.threshold, opts.reweight)
    scorers = model_scorers(opts.device)
    records = benchmark(ComfyClient(opts.server), edits, opts.model, opts.method, s, e, scorers)
    print(f"## PIE-Bench: {opts.data} ({len(edits)} edits), model {opts.model}; {s.sampler}/{s.scheduler}, "
          f"{s.steps} steps, cfg {s.cfg}; AttentionRefine cross {e.cross_replace} self {e.self_replace}"
          f"{f', LocalBlend {e.threshold}' if e.local_blend else ''}"
          f"{f', Reweight x{e.reweight:g}' if e.reweight != 1.0 else ''}\n")
    print(table(HEADER, summary(records, opts.method, opts.model)))
    for name, scorer in scorers.items():
        if scorer.score is None:
            print(f"\nskipped {name}: {scorer.reason}", end="")
    print()
    if opts.out:
        write_records(records, opts.out)
        print(f"per-image figures: {opts.out}")


if __name__ == "__main__":
    main()
