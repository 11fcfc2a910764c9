"""Test-only ComfyUI nodes (a custom node package of their own, loaded beside the pack by `harness.boot` and
the test server): tiny models by name, a latent capture for assertions, the reference attention path."""

from __future__ import annotations

from functools import cache

import torch
from comfy_api.latest import ComfyExtension, io

from .other_packs import NODES as OTHER_PACK_NODES
from .schemas import model_patch_schema

CAPTURED: dict[str, torch.Tensor] = {}


class TinyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestTinyModel",
            category="testing",
            inputs=[
                io.Combo.Input(
                    "family",
                    options=[
                        *("sd15", "sd15_v", "sdxl", "no_attention", "flux", "flux_schnell"),
                        *("sd3", "sd3_no_t5", "sd35_medium", "hunyuan_dit"),
                        *("qwen_image", "z_image", "chroma", "flux2"),
                        *("flux_widths", "sd35_large_widths"),
                    ],
                ),
                io.Int.Input("seed", default=0),
            ],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, family: str, seed: int) -> io.NodeOutput:
        from devtools import harness

        return io.NodeOutput(*harness.tiny_model(family, seed))


class FluxTextEncoders(io.ComfyNode):
    """The text encoders and VAE of the real-width Flux.1 diffusion model (harness.flux_text_encoders)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestFluxTextEncoders",
            category="testing",
            inputs=[io.Int.Input("seed", default=0)],
            outputs=[io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, seed: int) -> io.NodeOutput:
        from devtools import harness

        return io.NodeOutput(*harness.flux_text_encoders(seed))


class CaptureLatent(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestCaptureLatent",
            category="testing",
            inputs=[io.Latent.Input("samples"), io.String.Input("name")],
            outputs=[],
            is_output_node=True,
        )

    @classmethod
    def fingerprint_inputs(cls, **kwargs) -> float:
        return float("nan")  # never equal to itself: runs every time, also on a caching executor

    @classmethod
    def execute(cls, samples: dict, name: str) -> io.NodeOutput:
        CAPTURED[name] = samples["samples"].clone()
        return io.NodeOutput()


class ReferenceAttention(io.ComfyNode):
    """Switches a P2P-patched model to the explicit-softmax reference path of the edit."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestReferenceAttention",
            category="testing",
            inputs=[io.Model.Input("model")],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model) -> io.NodeOutput:
        from devtools import harness

        return io.NodeOutput(harness.pack("host.edit").with_reference_attention(model))


class SharpAttention(io.ComfyNode):
    """Scales every attention layer's query/key and output weights (a weight patch, as a LoRA is).

    A tiny random UNet attends almost uniformly and its attention adds little to the residual stream,
    so an edit of its attention hardly moves the image; sharper maps and a louder output make the
    edit's effect measurable without changing what the pack computes.
    """

    @classmethod
    def define_schema(cls) -> io.Schema:
        return model_patch_schema(
            "P2PTestSharpAttention",
            io.Float.Input("query_key_scale", default=3.0),
            io.Float.Input("output_scale", default=10.0),
        )

    @classmethod
    def execute(cls, model, query_key_scale: float, output_scale: float) -> io.NodeOutput:
        patched = model.clone()
        weights = patched.model_state_dict()
        for scale, parts in ((query_key_scale, (".to_q.", ".to_k.")), (output_scale, (".to_out.0.",))):
            keys = [k for k in weights if k.endswith("weight") and any(p in k for p in parts)]
            patched.add_patches({k: (torch.zeros_like(weights[k]),) for k in keys}, 1.0, scale)
        return io.NodeOutput(patched)


@torch.no_grad()
def sample_other_pack_ancestral(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    """Stands for another pack's stochastic sampler: an Euler step to sigma_next / 2, then fresh noise of
    std sqrt(sigma_next^2 - (sigma_next / 2)^2) from `noise_sampler` (its own N(0, 1) draws when none)."""
    extra_args = extra_args or {}
    if noise_sampler is None:
        generator = torch.Generator().manual_seed(int(extra_args.get("seed") or 0))
        noise_sampler = lambda sigma, sigma_next: torch.randn(x.shape, generator=generator).to(x)  # noqa: E731
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        down = sigmas[i + 1] / 2
        x = denoised + (x - denoised) * (down / sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise_sampler(sigmas[i], sigmas[i + 1]) * (sigmas[i + 1] ** 2 - down**2).sqrt()
    return x


class OtherPackSampler(io.ComfyNode):
    """Stands for another pack's SAMPLER that draws noise: optionally with a noise sampler of its own."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestOtherPackSampler",
            category="testing",
            inputs=[io.Boolean.Input("own_noise_sampler", default=False)],
            outputs=[io.Sampler.Output()],
        )

    @classmethod
    def execute(cls, own_noise_sampler: bool) -> io.NodeOutput:
        import comfy.samplers

        options = {}
        if own_noise_sampler:
            generator = torch.Generator().manual_seed(0)
            options["noise_sampler"] = lambda sigma, sigma_next: torch.randn((), generator=generator)
        return io.NodeOutput(comfy.samplers.KSAMPLER(sample_other_pack_ancestral, extra_options=options))


COMPILES: list[int] = []
"""One entry per graph a torch.compile backend of P2PTestTorchCompile was given (its node count)."""


@cache
def counting_backend(name: str):
    """The torch.compile backend `name`, counting every graph it compiles into COMPILES. One function per
    name, so that dynamo reuses what it compiled for a model compiled again by a later run."""
    from torch._dynamo.backends.registry import lookup_backend

    backend = lookup_backend(name)

    def compile_graph(graph_module: torch.fx.GraphModule, example_inputs: list):
        COMPILES.append(len(graph_module.graph.nodes))
        return backend(graph_module, example_inputs)

    return compile_graph


class TorchCompile(io.ComfyNode):
    """ComfyUI's own TorchCompileModel node (comfy_extras/nodes_torch_compile.py) run with a backend its
    menu does not offer (aot_eager runs on any CPU in seconds), counting the graphs it compiles; with
    `fullgraph`, the host's set_torch_compile_wrapper called as other packs' compile nodes call it."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestTorchCompile",
            category="testing",
            inputs=[
                io.Model.Input("model"),
                io.Combo.Input("backend", options=["aot_eager", "inductor"]),
                io.Boolean.Input("fullgraph", default=False),
            ],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, backend: str, fullgraph: bool) -> io.NodeOutput:
        from comfy_api.torch_helpers import set_torch_compile_wrapper
        from comfy_extras.nodes_torch_compile import TorchCompileModel

        if not fullgraph:
            return TorchCompileModel.execute(model, counting_backend(backend))
        compiled = model.clone()
        set_torch_compile_wrapper(compiled, backend=counting_backend(backend), fullgraph=True)
        return io.NodeOutput(compiled)


class TestFixtures(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            TinyModelLoader,
            FluxTextEncoders,
            CaptureLatent,
            ReferenceAttention,
            SharpAttention,
            OtherPackSampler,
            TorchCompile,
            *OTHER_PACK_NODES,
        ]


async def comfy_entrypoint() -> TestFixtures:
    return TestFixtures()
