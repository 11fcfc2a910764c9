"""The shipped workflows (`workflows/*.json`), written by the real frontend.

Each workflow is described here as an API-format graph with node positions and notes; the
frontend served by a real server loads it (`app.loadApiJson`), the nodes are placed, notes added,
and `app.graph.serialize()` gives the UI-format JSON a user saves and drags in. Rebuild after an
input of a node changes:

    .venv/bin/python tests/browser/build_workflows.py
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

TESTS = Path(__file__).resolve().parents[1]
WORKFLOWS = TESTS.parent / "workflows"
DOCS = TESTS.parent / "docs"
FIT_JS = """
(() => {
  const nodes = app.graph.nodes;
  const x0 = Math.min(...nodes.map((n) => n.pos[0])) - 20, y0 = Math.min(...nodes.map((n) => n.pos[1])) - 50;
  const x1 = Math.max(...nodes.map((n) => n.pos[0] + n.size[0])) + 20;
  const y1 = Math.max(...nodes.map((n) => n.pos[1] + n.size[1])) + 20;
  const canvas = app.canvas.canvas;
  const s = Math.min((canvas.clientWidth - 100) / (x1 - x0), (canvas.clientHeight - 100) / (y1 - y0));
  app.canvas.ds.scale = s;
  app.canvas.ds.offset = [70 / s - x0, 80 / s - y0];
  app.graph.setDirtyCanvas(true, true);
})()
"""

DEMO_NOTE = (
    "Runs as is on the pack's built-in demo model (32x32 pixel scenes of coloured shapes, a few seconds on a CPU). "
    "For your own images, replace P2P Demo Model Loader by Load Checkpoint (an SD1.5, SD2.x or SDXL checkpoint) "
    "and P2P Demo Empty Latent by Empty Latent Image (512x512 for SD1.5, 1024x1024 for SDXL), and write prompts "
    "of your own."
)
SD15_NOTE = (
    "Pick an SD1.5 checkpoint in Load Checkpoint (e.g. v1-5-pruned-emaonly.safetensors); SD2.x and SDXL "
    "checkpoints work too (SDXL at 1024x1024)."
)


@dataclass
class Spec:
    """One workflow: an API-format graph by node name, each node's [x, y], and notes at [x, y]."""

    title: str
    nodes: dict[str, dict]
    positions: dict[str, tuple[int, int]]
    notes: list[tuple[str, tuple[int, int], tuple[int, int]]] = field(default_factory=list)


def node(class_type: str, title: str | None = None, **inputs) -> dict:
    out = {"class_type": class_type, "inputs": inputs}
    if title:
        out["_meta"] = {"title": title}
    return out


def demo_base(source: str, target: str, seed: int = 3) -> dict[str, dict]:
    """Demo model -> PromptPair -> (edit goes here, as "edit") -> KSampler -> VAE Decode -> Save Image."""
    return {
        "loader": node("P2PDemoModelLoader"),
        "pair": node("PromptPair", clip=["loader", 1], source=source, target=target),
        "negative": node("CLIPTextEncode", "Negative prompt (empty)", clip=["loader", 1], text=""),
        "latent": node("P2PDemoEmptyLatent", width=32, height=32, batch_size=1),
        "sampler": node(
            "KSampler",
            model=["edit", 0],
            positive=["pair", 0],
            negative=["negative", 0],
            latent_image=["latent", 0],
            seed=seed,
            steps=20,
            cfg=5.0,
            sampler_name="euler",
            scheduler="simple",
            denoise=1.0,
        ),
        "decode": node("VAEDecode", samples=["sampler", 0], vae=["loader", 2]),
        "save": node("SaveImage", "Save (source, then targets)", images=["decode", 0], filename_prefix="p2p"),
    }


COLUMNS = {"loader": (0, 0), "pair": (360, 0), "negative": (360, 470), "latent": (360, 670)}
"""Shared places: loader left, prompts next, the edit nodes in the middle, sampling on the right."""


def place(**extra: tuple[int, int]) -> dict[str, tuple[int, int]]:
    return {**COLUMNS, "sampler": (1180, 0), "decode": (1540, 0), "save": (1540, 120), **extra}


def specs() -> dict[str, Spec]:
    out: dict[str, Spec] = {}

    nodes = demo_base(
        "a red circle next to a blue square on a yellow background",
        "a red triangle next to a blue square on a yellow background",
    )
    nodes["edit"] = node(
        "AttentionReplace", model=["loader", 0], prompts=["pair", 1], cross_replace=0.8, self_replace=0.4
    )
    out["p2p_word_swap"] = Spec(
        "Word swap: circle -> triangle, the rest of the scene kept",
        nodes,
        place(edit=(780, 0)),
        [
            (
                "**Word swap** (Attention Replace). The target differs from the source by swapped words; the "
                "target takes the source's attention maps for the first `cross_replace` of the steps, so the "
                "layout stays. Lower `cross_replace` (0.4-0.6) lets bigger shape changes through. The alignment "
                "under the prompts shows which word takes whose attention.\n\n" + DEMO_NOTE,
                (0, -300),
                (700, 240),
            )
        ],
    )

    nodes = demo_base("a red circle on a gray background", "a striped red circle on a gray background")
    nodes["edit"] = node(
        "AttentionRefine", model=["loader", 0], prompts=["pair", 1], cross_replace=0.8, self_replace=0.4
    )
    out["p2p_refine"] = Spec(
        "Refine: add words to the prompt",
        nodes,
        place(edit=(780, 0)),
        [
            (
                "**Refine** (Attention Refine): add or change a phrase. Words found in both prompts keep the "
                "source's attention; new words (green in the alignment) attend freely.\n\n" + DEMO_NOTE,
                (0, -260),
                (700, 200),
            )
        ],
    )

    nodes = demo_base(
        "a striped blue square on a white background",
        "\n".join(["a striped blue square on a white background"] * 5),
    )
    nodes["edit"] = node(
        "Reweight",
        model=["loader", 0],
        prompts=["pair", 1],
        weights="striped blue=-2|0|1|2|4",
        cross_replace=1.0,
        self_replace=0.4,
    )
    out["p2p_reweight_fader"] = Spec(
        "Re-weight fader sweep: less to more stripes",
        nodes,
        place(edit=(780, 0)),
        [
            (
                "**Re-weight fader** (Reweight). The target repeats the source on five lines: five images, "
                "each with the words `striped blue` scaled by one of the factors in `weights` (-2, 0, 1, 2, 4): "
                "from none (a negative factor pushes away) to more and bolder stripes. One factor for all "
                "targets also works (`striped=2`); Reweight chains after Attention Replace or Refine too.\n\n"
                + DEMO_NOTE,
                (0, -280),
                (700, 220),
            )
        ],
    )

    nodes = demo_base(
        "a green circle next to a blue square on a purple background",
        "a green diamond next to a blue square on a purple background",
    )
    nodes["swap"] = node(
        "AttentionReplace", model=["loader", 0], prompts=["pair", 1], cross_replace=0.6, self_replace=0.3
    )
    nodes["edit"] = node(
        "LocalBlend",
        model=["swap", 0],
        prompts=["pair", 1],
        source_words="circle",
        target_words="diamond",
        threshold=0.3,
    )
    out["p2p_local_blend"] = Spec(
        "Local blend: only the edited object changes",
        nodes,
        place(swap=(780, 0), edit=(780, 340)),
        [
            (
                "**Local blend**: a mask from the attention maps of `source_words` and `target_words` keeps "
                "everything outside the edited object identical to the source. Lower `threshold` grows the "
                "edited region.\n\n" + DEMO_NOTE,
                (0, -280),
                (700, 220),
            )
        ],
    )

    nodes = demo_base(
        "a red circle next to a blue square on a yellow background",
        "a red triangle next to a blue square on a yellow background",
    )
    nodes["swap"] = node(
        "AttentionReplace", model=["loader", 0], prompts=["pair", 1], cross_replace=0.8, self_replace=0.4
    )
    nodes["edit"] = node("AttentionMapRecorder", model=["swap", 0], prompts=["pair", 1])
    nodes["masks"] = node(
        "AttentionMaskExtract",
        model=["edit", 0],
        samples=["sampler", 0],
        prompts=["pair", 1],
        words="circle, triangle, square",
        threshold=0.3,
        images=["decode", 0],
    )
    nodes["heatmaps"] = node("PreviewImage", "Heat maps (one panel per word)", images=["masks", 1])
    nodes["mask_image"] = node("MaskToImage", mask=["masks", 0])
    nodes["mask_preview"] = node("PreviewImage", "Masks", images=["mask_image", 0])
    out["p2p_attention_maps"] = Spec(
        "Attention heat maps and masks of chosen words",
        nodes,
        place(
            swap=(780, 0),
            edit=(780, 340),
            masks=(1540, 420),
            heatmaps=(1940, 420),
            mask_image=(1940, 0),
            mask_preview=(2200, 0),
        ),
        [
            (
                "**Attention maps**: where each word of the prompts lands in the image (paper figure 4), here "
                "for a word swap. The Attention Map Recorder records the cross-attention maps while sampling "
                "(with or without an edit); Attention Mask Extract turns the chosen words into one MASK per image "
                "(for inpainting or compositing) and labelled heat maps, and says under the node how much of "
                "each image the mask covers.\n\n" + DEMO_NOTE,
                (0, -300),
                (700, 240),
            )
        ],
    )

    out["p2p_real_image_edit"] = real_image_spec()
    out["p2p_sdxl_word_swap"] = sdxl_spec()
    return out


def real_image_spec() -> Spec:
    nodes = {
        "loader": node("CheckpointLoaderSimple", ckpt_name="v1-5-pruned-emaonly.safetensors"),
        "photo": node("LoadImage", "Your photo", image="example.png"),
        "encode": node("VAEEncode", pixels=["photo", 0], vae=["loader", 2]),
        "pair": node(
            "PromptPair",
            clip=["loader", 1],
            source="a photo of a cat sitting on a sofa",
            target="a photo of a dog sitting on a sofa",
        ),
        "negative": node("CLIPTextEncode", "Negative prompt (empty)", clip=["loader", 1], text=""),
        "invert": node(
            "DDIMInvert",
            model=["loader", 0],
            positive=["pair", 0],
            latent=["encode", 0],
            steps=50,
            scheduler="normal",
            cfg=1.0,
        ),
        "edit": node(
            "AttentionReplace",
            model=["loader", 0],
            prompts=["pair", 1],
            cross_replace=0.8,
            self_replace=0.5,
            inversion=["invert", 1],
        ),
        "sampler": node(
            "KSamplerAdvanced",
            model=["edit", 0],
            add_noise="disable",
            noise_seed=0,
            steps=50,
            cfg=7.5,
            sampler_name="euler",
            scheduler="normal",
            positive=["pair", 0],
            negative=["negative", 0],
            latent_image=["invert", 0],
            start_at_step=0,
            end_at_step=10000,
            return_with_leftover_noise="disable",
        ),
        "decode": node("VAEDecode", samples=["sampler", 0], vae=["loader", 2]),
        "save": node(
            "SaveImage", "Save (reconstruction, then the edit)", images=["decode", 0], filename_prefix="p2p_real"
        ),
    }
    return Spec(
        "Edit a real photo: DDIM inversion, then a word swap",
        nodes,
        {
            "loader": (0, 0),
            "photo": (0, 240),
            "encode": (360, 240),
            "pair": (360, 400),
            "negative": (360, 870),
            "invert": (780, 240),
            "edit": (780, 520),
            "sampler": (1180, 240),
            "decode": (1540, 240),
            "save": (1540, 360),
        },
        [
            (
                "**Real photo**: DDIM Invert finds the noise that sampling turns back into your photo and records "
                "the way; the edit node's `inversion` input pins the source row to it, so the first image "
                "reconstructs the photo and the second is the edit. Sample with KSampler (Advanced), add_noise "
                "disabled, euler, and the same steps and scheduler as DDIM Invert. Describe the photo in the "
                "source prompt. Load your photo in Load Image (512x512 for SD1.5).\n\n" + SD15_NOTE,
                (0, -320),
                (760, 260),
            )
        ],
    )


def sdxl_spec() -> Spec:
    nodes = {
        "loader": node("CheckpointLoaderSimple", ckpt_name="sd_xl_base_1.0.safetensors"),
        "pair": node(
            "PromptPair",
            clip=["loader", 1],
            source="a cat riding a bicycle in a park, photo",
            target="a cat riding a motorcycle in a park, photo",
        ),
        "negative": node("CLIPTextEncode", "Negative prompt", clip=["loader", 1], text="blurry, lowres"),
        "latent": node("EmptyLatentImage", width=1024, height=1024, batch_size=1),
        "swap": node("AttentionReplace", model=["loader", 0], prompts=["pair", 1], cross_replace=0.7, self_replace=0.4),
        "edit": node(
            "LocalBlend",
            model=["swap", 0],
            prompts=["pair", 1],
            source_words="bicycle",
            target_words="motorcycle",
            threshold=0.3,
        ),
        "sampler": node(
            "KSampler",
            model=["edit", 0],
            positive=["pair", 0],
            negative=["negative", 0],
            latent_image=["latent", 0],
            seed=42,
            steps=30,
            cfg=7.0,
            sampler_name="dpmpp_2m",
            scheduler="karras",
            denoise=1.0,
        ),
        "decode": node("VAEDecode", samples=["sampler", 0], vae=["loader", 2]),
        "save": node("SaveImage", "Save (source, then target)", images=["decode", 0], filename_prefix="p2p_sdxl"),
    }
    return Spec(
        "SDXL word swap with local blend",
        nodes,
        place(swap=(780, 0), edit=(780, 340)),
        [
            (
                "**SDXL**: the same nodes work on SDXL (and SD1.x/SD2.x) checkpoints, with any sampler "
                "(ancestral and SDE ones included: the branches share their noise). Pick an SDXL checkpoint in "
                "Load Checkpoint (e.g. sd_xl_base_1.0.safetensors); 1024x1024.",
                (0, -240),
                (700, 180),
            )
        ],
    )


def api_graph(spec: Spec) -> tuple[dict, dict[str, int]]:
    """The spec's graph with numeric node ids, as the frontend saves them; and the name -> id map."""
    ids = {name: i for i, name in enumerate(spec.nodes, start=1)}

    def convert(value):
        return [str(ids[value[0]]), value[1]] if isinstance(value, list) else value

    graph = {
        str(ids[name]): {**n, "inputs": {k: convert(v) for k, v in n["inputs"].items()}}
        for name, n in spec.nodes.items()
    }
    return graph, ids


BUILD_JS = """
async (graph, positions, notes, title) => {
  app.loadApiJson(graph, title);
  for (const [id, pos] of Object.entries(positions)) app.graph.getNodeById(+id).pos = pos;
  for (const n of app.graph.nodes) {
    // Reproducible: the seed stays as written instead of changing after every run.
    const control = n.widgets?.find((w) => w.name === "control_after_generate");
    if (control) control.value = "fixed";
    if (n.type === "CLIPTextEncode") n.size = [400, 130];
    if (n.type === "PromptPair") n.size = [400, 400];
  }
  for (const [text, pos, size] of notes) {
    const note = LiteGraph.createNode("MarkdownNote");
    note.widgets[0].value = text;
    note.pos = pos;
    note.size = size;
    note.title = "Read me";
    app.graph.add(note);
  }
  app.graph.setDirtyCanvas(true, true);
  return JSON.stringify(app.graph.serialize());
}
"""


def build(browser, name: str, spec: Spec) -> dict:
    graph, ids = api_graph(spec)
    positions = {str(ids[name]): list(pos) for name, pos in spec.positions.items()}
    notes = [[text, list(pos), list(size)] for text, pos, size in spec.notes]
    saved = json.loads(browser.call(BUILD_JS, graph, positions, notes, spec.title))
    missing = set(ids) - set(spec.positions)
    if missing:
        raise ValueError(f"{spec.title}: no position for {sorted(missing)}")
    saved["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfyui-prompt-to-prompt/{name}"))
    saved["extra"] = {"p2p": {"title": spec.title}}
    return saved


def result_strip(server, spec: Spec, height: int = 192) -> Image.Image:
    """The images a demo workflow saves (source, then targets), side by side, scaled up with hard pixels."""
    graph, _ = api_graph(spec)
    images = server.images(server.run(graph))
    width = height * images[0].width // images[0].height
    strip = Image.new("RGB", (len(images) * (width + 8) - 8, height), (24, 24, 24))
    for i, image in enumerate(images):
        strip.paste(image.resize((width, height), Image.Resampling.NEAREST), (i * (width + 8), 0))
    return strip


def graph_shot(browser, name: str, spec: Spec) -> Image.Image:
    """The workflow as the frontend draws it, dropped on the page."""
    from browser.frontend import drop_workflow

    path = WORKFLOWS / f"{name}.json"
    drop_workflow(browser, path.name, path.read_text())
    browser.evaluate(FIT_JS)
    time.sleep(0.5)
    shot = browser.screenshot(Path(tempfile.mkdtemp()) / "shot.png")
    return Image.open(shot).convert("RGB")


def main(names: list[str]) -> None:
    """Write the chosen workflows (all by default), their Templates-menu thumbnails (`<name>.jpg`) and,
    for those on the demo model, their results under docs/ for the README."""
    sys.path.insert(0, str(TESTS))
    from browser.cdp import Chromium
    from browser.frontend import open_frontend
    from comfy_server import ComfyServer

    chosen = {name: spec for name, spec in specs().items() if not names or name in names}
    with ComfyServer() as server, Chromium() as browser:
        open_frontend(server, browser)
        for name, spec in chosen.items():
            path = WORKFLOWS / f"{name}.json"
            path.write_text(json.dumps(build(browser, name, spec), indent=2) + "\n")
            if any(n["class_type"] == "P2PDemoModelLoader" for n in spec.nodes.values()):
                picture = result_strip(server, spec)
                picture.save(DOCS / f"{name}_result.png")
            else:
                picture = graph_shot(browser, name, spec)
            thumbnail = ImageOps.pad(picture, (512, 384), color=(24, 24, 24))
            thumbnail.save(path.with_suffix(".jpg"), quality=90)
            sys.stdout.write(f"wrote {path} and its thumbnail\n")


if __name__ == "__main__":
    main(sys.argv[1:])
