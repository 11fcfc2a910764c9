"""Test-only ComfyUI nodes: tiny models by name, and a latent capture for assertions."""

from __future__ import annotations

from functools import cache

import torch
from comfy_api.latest import ComfyExtension, io

CAPTURED: dict[str, torch.Tensor] = {}


class TinyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestTinyModel",
            category="testing",
            inputs=[
                io.Combo.Input("family", options=["sd15", "sd15_v", "sdxl", "no_attention"]),
                io.Int.Input("seed", default=0),
            ],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, family: str, seed: int) -> io.NodeOutput:
        import comfy_harness

        return io.NodeOutput(*comfy_harness.tiny_model(family, seed))


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
        import comfy_harness

        return io.NodeOutput(comfy_harness.pack("nodes.patching").with_reference_attention(model))


OTHER_PACK_CALLS: list[int] = []


class OtherPackAttention(io.ComfyNode):
    """Stands for another pack's attn2 replace patch on every block: scales the values, counts calls."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestOtherPackAttention",
            category="testing",
            inputs=[io.Model.Input("model"), io.Float.Input("scale", default=1.5)],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, scale: float) -> io.NodeOutput:
        from comfy.ldm.modules.attention import optimized_attention

        import comfy_harness

        def other_attention(q, k, v, options):
            OTHER_PACK_CALLS.append(q.shape[0])
            return optimized_attention(q, k, v * scale, options["n_heads"])

        patched = model.clone()
        for key in comfy_harness.pack("nodes.patching").transformer_blocks(model):
            patched.set_model_attn2_replace(other_attention, *key)
        return io.NodeOutput(patched)


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
        return [TinyModelLoader, CaptureLatent, ReferenceAttention, OtherPackAttention, TorchCompile]


async def comfy_entrypoint() -> TestFixtures:
    return TestFixtures()
