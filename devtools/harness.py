"""A real ComfyUI host in-process: boot it with the pack loaded, build model fixtures, run graphs
(tests, benchmarks and scripts/run_workflows.py).

Nothing is downloaded: tiny models are built from configs (real CLIP tokenizer, random
weights), and checkpoints with the real SD1.5/SDXL tensor shapes are written once per
machine to a cache folder and loaded by the stock CheckpointLoaderSimple.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import os
import sys
import tempfile
import uuid
from functools import cache
from pathlib import Path

import torch

from .comfy_host import REPO, put_comfy_on_path

PACK_NAME = "comfyui-prompt-to-prompt"
CACHE = Path(os.environ.get("P2P_TEST_CACHE", REPO / ".cache"))
FIXTURE_NODES = REPO / "devtools" / "fixture_nodes"
"""Test-only nodes (tiny models by name, a latent capture), a custom node package of their own."""


def pack_folder() -> Path:
    """A custom_nodes folder holding the pack under its published name (a link to the repo)."""
    folder = CACHE / "custom_nodes"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / PACK_NAME
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    return folder


_booted: list[bool] = []


def boot(fixture_nodes: bool = True) -> None:
    """Import ComfyUI on the CPU with its built-in nodes and this pack loaded, as main.py would, and the
    test fixture nodes unless `fixture_nodes` is False (the demo command). Once per process."""
    if _booted:
        return
    server = sys.modules.get("server")
    if server is not None and getattr(server.PromptServer, "instance", None) is not None:
        return  # inside the real server (devtools/server.py): main.py has done all this
    put_comfy_on_path()
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import folder_paths
    import utils.extra_config  # noqa: F401  (before `nodes`, which puts comfy/ first on sys.path)

    scratch = Path(tempfile.mkdtemp(prefix="p2p-comfy-"))
    for kind in ("output", "input", "temp"):
        (scratch / kind).mkdir()
    folder_paths.set_output_directory(str(scratch / "output"))
    folder_paths.set_input_directory(str(scratch / "input"))
    folder_paths.set_temp_directory(str(scratch / "temp"))
    folder_paths.add_model_folder_path("checkpoints", str(CACHE / "checkpoints"))
    folder_paths.add_model_folder_path("diffusion_models", str(CACHE / "diffusion_models"))
    folder_paths.add_model_folder_path("loras", str(CACHE / "loras"))
    import nodes

    asyncio.run(nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    for folder in (pack_folder() / PACK_NAME, *([FIXTURE_NODES] if fixture_nodes else [])):
        if not asyncio.run(nodes.load_custom_node(str(folder))):
            raise RuntimeError(f"ComfyUI could not load {folder}")
    _booted.append(True)


class _Server:
    """What PromptExecutor needs of a server: somewhere to send progress messages."""

    client_id = None
    last_node_id = None
    last_prompt_id = None

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict]] = []

    def send_sync(self, event: str, data: dict, sid: str | None = None) -> None:
        self.messages.append((event, data))


class GraphError(RuntimeError):
    """A graph that failed validation or execution; `message` is what the user would read."""

    def __init__(self, message: str, details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


@cache
def caching_executor():
    """The one executor kept across runs, as the server keeps one: nodes whose inputs did not change are
    served from its cache (`run_graph(..., keep_outputs=True)`)."""
    import execution

    return execution.PromptExecutor(_Server(), cache_args={"lru": 0, "ram": 0})


def run_graph(graph: dict, keep_outputs: bool = False) -> dict:
    """Validate and execute an API-format graph; returns the UI outputs by node id.

    keep_outputs: run on one executor kept across calls, as the server does, so that nodes whose
    inputs did not change (a big checkpoint's loader) are not run again."""
    boot()
    import execution

    prompt_id = str(uuid.uuid4())
    valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, graph, None))
    if not valid:
        raise GraphError(f"{error.get('message')}: {error.get('details')}", node_errors)
    executor = (
        caching_executor() if keep_outputs else execution.PromptExecutor(_Server(), cache_args={"lru": 0, "ram": 0})
    )
    executor.execute(graph, prompt_id, {}, outputs)
    forget_dead_clones()
    if not executor.success:
        errors = [data for event, data in executor.status_messages if event == "execution_error"]
        message = errors[0]["exception_message"] if errors else "execution failed"
        raise GraphError(message, errors)
    return executor.history_result["outputs"]


def forget_dead_clones() -> None:
    """Drop ComfyUI's loaded-model entries of model clones that are gone (an edit node's clone, after its
    graph ran) while the model they cloned lives on in tiny_model's cache. ComfyUI takes such an entry for a
    leak and runs a full `gc.collect()` (0.6 s in this process) before every later model load, for as long as
    the entry stays: with tiny models of several families in one session that was most of a test's time. The
    weights stay where they are (the CPU)."""
    import comfy.model_management

    loaded = comfy.model_management.current_loaded_models
    loaded[:] = [entry for entry in loaded if not entry.is_dead()]


def free_models() -> None:
    """Unload every model this process's ComfyUI holds, drop the caching executor's outputs, and hand the freed
    memory back to the system (glibc keeps freed small blocks otherwise), so that the real-shape checkpoints
    of two tests are never held at once (up to 19 GB each). Nothing to do before the host is booted."""
    if not _booted:
        return
    import comfy.model_management

    caching_executor.cache_clear()
    comfy.model_management.unload_all_models()
    gc.collect()
    comfy.model_management.soft_empty_cache()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def init_weights(module: torch.nn.Module, std: float = 0.02, attn_std: float = 0.1, seed: int = 0) -> None:
    """ComfyUI's ops skip reset_parameters: give every weight a value.

    Cross-attention queries and keys get a larger std so that random maps are not uniform (with every
    weight at std 0.02 a word's max-normalised map is above 0.6 nearly everywhere, and a mask test
    passes vacuously): masks and blends then have something to find.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias") or "norm" in name.split(".")[-2:][0]:
                p.copy_(torch.ones_like(p) if ("norm" in name and name.endswith("weight")) else torch.zeros_like(p))
            else:
                # the values of randn(...) * std, drawn in fp32 as ever (a 2B-weight checkpoint's half of its time)
                scale = attn_std if "attn2.to_q" in name or "attn2.to_k" in name else std
                p.copy_(torch.empty(p.shape).normal_(0.0, scale, generator=generator))
        for b in module.buffers():
            if b.is_floating_point() and not torch.isfinite(b).all():
                b.zero_()


def init_dit_weights(dit: torch.nn.Module, hidden: int, std: float = 0.1, seed: int = 0) -> None:
    """init_weights for a DiT (Flux, SD3's MMDiT, Qwen-Image, NextDiT), so that its output depends on the prompt:
    the q/k RMSNorm scales 1 (init_weights zeroes Flux's as biases and draws SD3's `ln_q` / `ln_k` as weights)
    and every block's residual gates open (bias 1 on the gate thirds of the (shift, scale, gate) modulations,
    `hidden` wide: at weights of std 0.02 the gates stay near 0, and the text moves the output by 1e-5;
    Qwen-Image's `img_mod` / `txt_mod` likewise; NextDiT's tanh gates, the 2nd and 4th quarters of its (scale,
    gate, scale, gate) modulation, and its context RMSNorm scale 1); SD3's position embedding the fixed 2-D
    sin-cos one its checkpoints hold."""
    init_weights(dit, std=std, seed=seed)
    with torch.no_grad():
        for name, p in dit.named_parameters():
            if name.endswith(("norm.scale", "ln_q.weight", "ln_k.weight")):
                p.fill_(1.0)
            elif name.endswith(("mod.lin.bias", "modulation.lin.bias", "img_mod.1.bias", "txt_mod.1.bias")) or (
                name.startswith("joint_blocks.")
                and name.endswith("adaLN_modulation.1.bias")
                and p.numel() % (3 * hidden) == 0
            ):
                p.view(-1, 3, hidden)[:, 2] = 1.0
            elif name.endswith("adaLN_modulation.0.bias") and p.numel() == 4 * hidden:  # NextDiT: tanh gates
                p.view(4, hidden)[1::2] = 1.0
            elif name == "cap_embedder.0.weight":  # NextDiT: the context's RMSNorm scale
                p.fill_(1.0)
        if getattr(dit, "pos_embed", None) is not None:  # SD3: a buffer ComfyUI leaves uninitialised (torch.empty)
            from comfy.ldm.modules.diffusionmodules.mmdit import get_2d_sincos_pos_embed

            grid = dit.pos_embed_max_size
            dit.pos_embed.copy_(torch.from_numpy(get_2d_sincos_pos_embed(hidden, grid)).to(dit.pos_embed)[None])


TINY_UNET = {
    "use_checkpoint": False,
    "image_size": 32,
    "use_spatial_transformer": True,
    "legacy": False,
    "in_channels": 4,
    "out_channels": 4,
    "model_channels": 32,
    "num_res_blocks": [1, 1, 1],
    "channel_mult": [1, 2, 2],
    "transformer_depth": [0, 1, 1],
    "transformer_depth_output": [0, 0, 1, 1, 1, 1],
    "transformer_depth_middle": 1,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
TINY_CLIP = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 3}
TINY_T5 = {"d_model": 64, "d_ff": 128, "d_kv": 16, "num_heads": 4, "num_layers": 2}
"""A T5 encoder of T5-XXL's layout (gated GELU, relative positions, its 32128-token vocabulary), 64 wide."""
TINY_FLUX = {
    "image_model": "flux",
    "in_channels": 16,
    "out_channels": 16,
    "patch_size": 2,
    "vec_in_dim": TINY_CLIP["hidden_size"],
    "context_in_dim": TINY_T5["d_model"],
    "hidden_size": 64,
    "mlp_ratio": 2.0,
    "num_heads": 4,
    "depth": 2,
    "depth_single_blocks": 2,
    "axes_dim": [4, 6, 6],
    "theta": 10000,
    "qkv_bias": True,
}
"""Flux.1's layout (double then single blocks, RoPE on 3 axes, 16 latent channels in 2x2 patches), 64 wide."""
TINY_FLUX2 = {
    **TINY_FLUX,
    "image_model": "flux2",
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "vec_in_dim": None,
    "axes_dim": [4, 4, 4, 4],
    "mlp_ratio": 3.0,
    "theta": 2000,
    "global_modulation": True,
    "mlp_silu_act": True,
    "qkv_bias": False,
    "ops_bias": False,
    "default_ref_method": "index",
    "ref_index_scale": 10.0,
    "guidance_embed": True,
}
"""Flux.2's transformer as model_detection reads it (128 latent channels unpatched, RoPE on 4 axes, one
modulation shared by all double and by all single blocks, no pooled vector), 64 wide. Its text encoder
(Mistral 3 Small, whose tokenizer ComfyUI reads from the checkpoint: none offline) stands in as Flux.1's T5."""
TINY_CHROMA = {
    **{name: value for name, value in TINY_FLUX.items() if name != "vec_in_dim"},
    "image_model": "chroma",
    "in_channels": 64,
    "out_channels": 64,
    "in_dim": 64,
    "out_dim": 64,
    "hidden_dim": 128,
    "n_layers": 2,
}
"""Chroma as model_detection reads it (Flux's blocks without their own modulation, the approximator that makes
every block's modulation from the timestep, 16 latent channels in 2x2 patches), 64 wide, T5 alone."""
TINY_SD3_T5 = {"d_model": 4096, "d_ff": 64, "d_kv": 16, "num_heads": 2, "num_layers": 1}
"""SD3 concatenates the T5 tokens after the CLIP-L/G ones padded to 4096 features: its T5 is T5-XXL's width."""
TINY_SD3 = {
    "in_channels": 16,
    "out_channels": 16,
    "patch_size": 2,
    "depth": 3,
    "input_size": None,
    "adm_in_channels": 64 + 96,
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 3 * 64}},
    "num_patches": 256,
    "pos_embed_max_size": 16,
    "pos_embed_scaling_factor": None,
    "x_block_self_attn_layers": [],
}
"""SD3's MMDiT as ComfyUI detects it from a checkpoint (model_detection): 3 joint blocks, 64 per head as every
MMDiT (192 wide, 3 heads), up to 16x16 patches (256 px), the context the CLIP-L/G (64 + 96 features here) and
T5 tokens padded to 4096, the pooled CLIP-L and CLIP-G vectors (64 + 96) as its `y`."""
TINY_LLM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2}
"""An LLM text encoder of ComfyUI's Llama class (Qwen2.5-VL's or Qwen3's layout, 128 per head, their
vocabulary and tokenizer), 64 wide, 3 layers (Z-Image reads the second to last)."""
TINY_QWEN_IMAGE = {
    "image_model": "qwen_image",
    "in_channels": 64,
    "num_layers": 3,
    "attention_head_dim": 16,
    "num_attention_heads": 4,
    "joint_attention_dim": TINY_LLM["hidden_size"],
    "axes_dims_rope": [4, 6, 6],
}
"""Qwen-Image's transformer as model_detection reads it (16 latent channels in 2x2 patches, its joint blocks
over [text, image]), 3 blocks of 4 heads of 16, its context the Qwen2.5-VL hidden states."""
TINY_Z_IMAGE = {
    "image_model": "lumina2",
    "patch_size": 2,
    "in_channels": 16,
    "dim": 256,
    "cap_feat_dim": TINY_LLM["hidden_size"],
    "n_layers": 3,
    "qk_norm": True,
    "n_heads": 4,
    "n_kv_heads": 4,
    "axes_dims": [16, 24, 24],
    "axes_lens": [1536, 512, 512],
    "rope_theta": 256.0,
    "ffn_dim_multiplier": 8.0 / 3.0,
    "z_image_modulation": True,
    "time_scale": 1000.0,
    "pad_tokens_multiple": 32,
}
"""Z-Image's NextDiT as model_detection reads it (its RoPE theta, time scale and modulation, text and image
tokens each padded to a multiple of 32, the two context and two noise refiner layers), 3 layers of 4 heads of
64, 256 wide (its modulation reads a 256-wide time embedding), its context the Qwen3 hidden states."""

FLUX_WIDTHS = {"hidden_size": 3072, "num_heads": 24, "mlp_ratio": 4.0, "axes_dim": [16, 56, 56], "depth": 1}
"""Flux.1's real widths (3072 wide: 24 heads of 128, RoPE axes 16/56/56, MLP 4x) in 1 double and 1 single block
(TINY_FLUX's depth_single_blocks), on the tiny T5 and CLIP-L (context and vector 64 wide, not 4096 and 768):
`flux_widths`, the joint pipeline benchmark's Flux."""
SD35_LARGE_WIDTHS = {
    "depth": 38,
    "num_blocks": 2,
    "qk_norm": "rms",
    "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 2432}},
}
"""SD3.5 Large's real widths (ComfyUI's MMDiT at depth 38: 2432 wide, 38 heads of 64, q/k RMSNorm) in its first 2
joint blocks (the second pre-only, as a real model's last): `sd35_large_widths`, the joint pipeline benchmark's."""


@cache
def tiny_model(family: str, seed: int = 0):
    """(MODEL, CLIP, VAE) of a tiny `sd15`, `sd15_v` (v-prediction), `sdxl`, `flux` (Flux.1 dev: guidance
    embedded, T5 + pooled CLIP-L), `flux_schnell`, `sd3` (SD3 medium's MMDiT, CLIP-L/G + T5), `sd3_no_t5` (its
    CLIP without T5), `sd35_medium` (MMDiT-X: q/k RMSNorm, image-only self-attention in the first two joint
    blocks), `qwen_image`, `z_image`, `chroma` or `flux2` model; `flux_widths` and `sd35_large_widths` the real
    widths in a few blocks (FLUX_WIDTHS, SD35_LARGE_WIDTHS); `hunyuan_dit` is a MODEL alone (CLIP and VAE None)."""
    boot()
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    clip_target = None  # the model config's own, where the branch sets none
    if family in ("sd15", "sd15_v"):
        config = comfy.supported_models.SD15({**TINY_UNET, "context_dim": 64, "adm_in_channels": None})
        clip_options = {"clip_l_model_config": {**TINY_CLIP, "projection_dim": 64}}
    elif family == "sdxl":
        config = comfy.supported_models.SDXL(
            {
                **TINY_UNET,
                "use_linear_in_transformer": True,
                "context_dim": 160,
                "adm_in_channels": 96 + 6 * 256,
                "num_classes": "sequential",
            }
        )
        clip_options = {
            "clip_l_model_config": {**TINY_CLIP, "projection_dim": 64},
            "clip_g_model_config": {**TINY_CLIP, "hidden_size": 96, "intermediate_size": 192, "projection_dim": 96},
        }
    elif family == "no_attention":
        config = comfy.supported_models.SD15(
            {
                **TINY_UNET,
                "context_dim": 64,
                "adm_in_channels": None,
                "transformer_depth": [0, 0, 0],
                "transformer_depth_output": [0] * 6,
                "transformer_depth_middle": -1,
            }
        )
        clip_options = {"clip_l_model_config": {**TINY_CLIP, "projection_dim": 64}}
    elif family in ("flux", "flux_schnell", "flux_widths"):
        schnell = family == "flux_schnell"
        config_class = comfy.supported_models.FluxSchnell if schnell else comfy.supported_models.Flux
        widths = FLUX_WIDTHS if family == "flux_widths" else {}
        config = config_class(flux_config(**widths, guidance_embed=not schnell))
        clip_options = {"clip_l_model_config": {**TINY_CLIP, "projection_dim": 64}, "t5xxl_model_config": TINY_T5}
    elif family in ("sd3", "sd3_no_t5", "sd35_medium", "sd35_large_widths"):
        import comfy.supported_models_base
        import comfy.text_encoders.sd3_clip

        medium = {"qk_norm": "rms", "x_block_self_attn_layers": [0, 1]} if family == "sd35_medium" else {}
        widths = SD35_LARGE_WIDTHS if family == "sd35_large_widths" else {}
        config = comfy.supported_models.SD3({**TINY_SD3, **medium, **widths})
        clip_target = comfy.supported_models_base.ClipTarget(
            comfy.text_encoders.sd3_clip.SD3Tokenizer, comfy.text_encoders.sd3_clip.sd3_clip(t5=family != "sd3_no_t5")
        )
        clip_options = {
            "clip_l_model_config": {**TINY_CLIP, "projection_dim": 64},
            "clip_g_model_config": {**TINY_CLIP, "hidden_size": 96, "intermediate_size": 192, "projection_dim": 96},
            "t5xxl_model_config": TINY_SD3_T5,
        }
    elif family == "flux2":
        import comfy.supported_models_base
        import comfy.text_encoders.flux
        from comfy.ldm.flux.model import FluxParams

        newer = {"txt_ids_dims": [3]} if "txt_ids_dims" in FluxParams.__dataclass_fields__ else {}
        config = comfy.supported_models.Flux2({**TINY_FLUX2, **newer})
        clip_target = comfy.supported_models_base.ClipTarget(
            comfy.text_encoders.flux.FluxTokenizer, comfy.text_encoders.flux.flux_clip()
        )
        clip_options = {"clip_l_model_config": {**TINY_CLIP, "projection_dim": 64}, "t5xxl_model_config": TINY_T5}
    elif family == "chroma":
        from comfy.ldm.chroma.model import ChromaParams

        # ComfyUI 0.8 reads the context's position axes and the pooled width (Chroma: none) as Flux's
        newer = {"txt_ids_dims": [], "vec_in_dim": None} if "txt_ids_dims" in ChromaParams.__dataclass_fields__ else {}
        config = comfy.supported_models.Chroma({**TINY_CHROMA, **newer})
        clip_options = {"t5xxl_model_config": TINY_T5}
    elif family == "qwen_image":
        config = comfy.supported_models.QwenImage(TINY_QWEN_IMAGE)
        llm = {**TINY_LLM, "num_key_value_heads": 1}
        clip_options = {"qwen25_7b_model_config": llm}
    elif family == "z_image":
        config = comfy.supported_models.ZImage(TINY_Z_IMAGE)
        clip_options = {"qwen3_4b_model_config": {**TINY_LLM, "num_key_value_heads": 1}}
    elif family == "hunyuan_dit":  # a family the pack refuses: the model alone (no CLIP, no VAE)
        config = comfy.supported_models.HunyuanDiT(
            {"image_model": "hydit", "hidden_size": 64, "depth": 2, "num_heads": 4, "input_size": 8}
            | {"text_states_dim": 64, "text_states_dim_t5": 64}
        )
        clip_options = None
    else:
        raise ValueError(family)
    if family == "sd15_v":
        config.model_type = lambda *args, **kwargs: comfy.model_base.ModelType.V_PREDICTION
    unet = config.get_model({})
    if family.startswith(("flux", "sd3", "qwen", "z_image", "chroma")):
        dit = unet.diffusion_model
        init_dit_weights(
            dit, getattr(dit, "hidden_size", None) or getattr(dit, "inner_dim", None) or dit.dim, seed=seed
        )
    else:
        init_weights(unet, seed=seed)
    unet.eval()
    model = comfy.model_patcher.ModelPatcher(
        unet, load_device=comfy.model_management.get_torch_device(), offload_device=torch.device("cpu")
    )
    if clip_options is None:
        return model, None, None
    clip, vae = text_encoders_and_vae(
        clip_target or config.clip_target({}), clip_options, config.latent_format.latent_channels, seed
    )
    return model, clip, vae


def text_encoders_and_vae(clip_target, clip_options: dict, latent_channels: int, seed: int = 0) -> tuple:
    """(CLIP, VAE): the ClipTarget's text encoders built with `clip_options` (their configs by name, e.g.
    `t5xxl_model_config`; a name left out is the encoder's real config) on the real tokenizers, and a TAESD of
    `latent_channels` channels, random weights seeded from `seed`."""
    import comfy.sd
    import comfy.taesd.taesd

    clip = comfy.sd.CLIP(clip_target, model_options=clip_options)
    vision_llm = getattr(getattr(clip.cond_stage_model, "qwen25_7b", None), "transformer", None)
    if vision_llm is not None:  # Qwen2.5-VL's vision tower (0.6B weights at its fixed size) reads images, no text
        del vision_llm.visual
    init_weights(clip.cond_stage_model, seed=seed + 1, attn_std=0.02)
    taesd = comfy.taesd.taesd.TAESD(latent_channels=latent_channels)
    init_weights(taesd, std=0.05, seed=seed + 2)
    return clip, comfy.sd.VAE(sd=taesd.state_dict())


@cache
def flux_text_encoders(seed: int = 0) -> tuple:
    """(CLIP, VAE) for the real-width Flux.1 diffusion model (`devtools.checkpoints`' `flux_widths`): CLIP-L at its
    real shape (its pooled vector 768 wide, Flux's `vec_in`) and a T5 of T5-XXL's width (4096, Flux's context) in
    one layer (TINY_SD3_T5), on the real tokenizers, and a TAESD of Flux's 16 latent channels.

    Not a file for the stock DualCLIPLoader: it builds T5-XXL's 24 layers whatever the file holds (it recognises
    T5-XXL by the 24th block's weights), 4.7B weights to write and run for a 4096-wide context."""
    boot()
    import comfy.supported_models_base
    import comfy.text_encoders.flux

    target = comfy.supported_models_base.ClipTarget(
        comfy.text_encoders.flux.FluxTokenizer, comfy.text_encoders.flux.flux_clip()
    )
    return text_encoders_and_vae(target, {"t5xxl_model_config": TINY_SD3_T5}, 16, seed)


def flux_config(**fields) -> dict:
    """A Flux.1 transformer config as model_detection reads one: TINY_FLUX with `fields` over it, and the fields
    ComfyUI 0.8 added (the context's position axes, none on Flux.1; 0.3.75 has no such field)."""
    from comfy.ldm.flux.model import FluxParams

    newer = {"txt_ids_dims": []} if "txt_ids_dims" in FluxParams.__dataclass_fields__ else {}
    return {**TINY_FLUX, **newer, **fields}


def loaded_module(folder: Path, submodule: str = ""):
    """A module of a custom node package as ComfyUI loaded it (its name is derived from the path)."""
    import importlib

    boot()
    name = str(folder).replace(".", "_x_")
    return importlib.import_module(f"{name}.{submodule}" if submodule else name)


def pack(submodule: str = ""):
    """The pack's module `submodule` (e.g. "host.edit") as loaded by ComfyUI."""
    return loaded_module(pack_folder() / PACK_NAME, submodule)


def captured_latents() -> dict:
    """Latents stored by the P2PTestCaptureLatent nodes, by name."""
    return loaded_module(FIXTURE_NODES).CAPTURED


def tiny_lora(family: str = "sd15") -> str:
    """A LoRA file for the tiny model (every cross-attention key/value projection), by its name in
    ComfyUI's loras folder."""
    import safetensors.torch

    name = f"p2p_tiny_{family}_lora.safetensors"
    path = CACHE / "loras" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        unet = tiny_model(family, 0)[0].model.diffusion_model
        generator = torch.Generator().manual_seed(5)
        tensors = {}
        for key, weight in unet.state_dict().items():
            if ".attn2.to_k." in key or ".attn2.to_v." in key:
                stem = "diffusion_model." + key.removesuffix(".weight")
                tensors[f"{stem}.lora_up.weight"] = torch.randn(weight.shape[0], 4, generator=generator) * 0.3
                tensors[f"{stem}.lora_down.weight"] = torch.randn(4, weight.shape[1], generator=generator) * 0.3
        safetensors.torch.save_file(tensors, str(path))
    return name
