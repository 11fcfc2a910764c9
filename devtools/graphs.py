"""API-format graphs the tests run; small builders so each test states only what it varies."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def edit_graph(
    family: str = "sd15",
    source: str = "a red cat riding a bicycle",
    target: str = "a red cat riding a car",
    edit: str | None = "AttentionReplace",
    edit_inputs: dict | None = None,
    chain: list[tuple[str, dict]] = (),
    sampler: str = "euler",
    scheduler: str = "normal",
    steps: int = 4,
    cfg: float = 5.0,
    width: int = 64,
    height: int = 64,
    batch: int = 1,
    seed: int = 1,
    capture: str = "out",
    loader: dict | None = None,
    negative: str = "",
    reference: bool = False,
) -> dict:
    """Loader -> PromptPair -> edit node(s) -> KSampler -> capture."""
    graph = {
        "model": loader or {"class_type": "P2PTestTinyModel", "inputs": {"family": family, "seed": 0}},
        "pair": {"class_type": "PromptPair", "inputs": {"clip": ["model", 1], "source": source, "target": target}},
        "negative": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["model", 1], "text": negative}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": batch}},
    }
    model = ["model", 0]
    if edit:
        inputs = {"cross_replace": 0.8, "self_replace": 0.4, **(edit_inputs or {})}
        graph["edit"] = {"class_type": edit, "inputs": {"model": model, "prompts": ["pair", 1], **inputs}}
        model = ["edit", 0]
    for i, (class_type, inputs) in enumerate(chain):
        graph[f"chain{i}"] = {"class_type": class_type, "inputs": {"model": model, "prompts": ["pair", 1], **inputs}}
        model = [f"chain{i}", 0]
    if reference:
        graph["reference"] = {"class_type": "P2PTestReferenceAttention", "inputs": {"model": model}}
        model = ["reference", 0]
    graph["sample"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "positive": ["pair", 0],
            "negative": ["negative", 0],
            "latent_image": ["latent", 0],
            "seed": seed,
            "steps": steps,
            "cfg": cfg,
            "sampler_name": sampler,
            "scheduler": scheduler,
            "denoise": 1.0,
        },
    }
    graph["capture"] = {"class_type": "P2PTestCaptureLatent", "inputs": {"samples": ["sample", 0], "name": capture}}
    return graph


def add_mask_extract(graph: dict, model: list, words: str, threshold: float, **inputs) -> dict:
    """AttentionMaskExtract of the sampled latent, its MASK previewed as an image (`mask_preview`)."""
    graph["extract"] = {
        "class_type": "AttentionMaskExtract",
        "inputs": {
            "model": model,
            "samples": ["sample", 0],
            "prompts": ["pair", 1],
            "words": words,
            "threshold": threshold,
            **inputs,
        },
    }
    graph["mask_image"] = {"class_type": "MaskToImage", "inputs": {"mask": ["extract", 0]}}
    graph["mask_preview"] = {"class_type": "PreviewImage", "inputs": {"images": ["mask_image", 0]}}
    return graph


def read_pngs(entries: list[dict]) -> torch.Tensor:
    """The images PreviewImage wrote, [N, H, W, 3] uint8."""
    import folder_paths

    folder = folder_paths.get_temp_directory()
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(f"{folder}/{e['subfolder']}/{e['filename']}"))) for e in entries]
    )
