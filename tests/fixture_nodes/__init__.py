"""Test-only ComfyUI nodes: tiny models by name, and a latent capture for assertions."""

from __future__ import annotations

import torch
from comfy_api.latest import ComfyExtension, io

CAPTURED: dict[str, torch.Tensor] = {}


class TinyModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestTinyModel",
            category="testing",
            inputs=[io.Combo.Input("family", options=["sd15", "sd15_v", "sdxl"]), io.Int.Input("seed", default=0)],
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


class TestFixtures(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TinyModelLoader, CaptureLatent, ReferenceAttention]


async def comfy_entrypoint() -> TestFixtures:
    return TestFixtures()
