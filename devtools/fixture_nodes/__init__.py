"""Test-only ComfyUI nodes (a custom node package of their own, loaded beside the pack by `harness.boot` and
the test server): tiny models by name, a latent capture for assertions, the reference attention path."""

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
            inputs=[
                io.Combo.Input(
                    "family", options=["sd15", "sd15_v", "sdxl", "no_attention", "flux", "flux_schnell", "hunyuan_dit"]
                ),
                io.Int.Input("seed", default=0),
            ],
            outputs=[io.Model.Output(), io.Clip.Output(), io.Vae.Output()],
        )

    @classmethod
    def execute(cls, family: str, seed: int) -> io.NodeOutput:
        from devtools import harness

        return io.NodeOutput(*harness.tiny_model(family, seed))


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

        from devtools import harness

        def other_attention(q, k, v, options):
            OTHER_PACK_CALLS.append(q.shape[0])
            return optimized_attention(q, k, v * scale, options["n_heads"])

        patched = model.clone()
        for key in harness.pack("host.unet").transformer_blocks(model):
            patched.set_model_attn2_replace(other_attention, *key)
        return io.NodeOutput(patched)


class OtherPackAttentionOverride(io.ComfyNode):
    """Stands for another pack's `optimized_attention_override` (DiT models): scales the values, counts calls."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="P2PTestOtherPackAttentionOverride",
            category="testing",
            inputs=[io.Model.Input("model"), io.Float.Input("scale", default=1.5)],
            outputs=[io.Model.Output()],
        )

    @classmethod
    def execute(cls, model, scale: float) -> io.NodeOutput:
        def other_override(func, q, k, v, *args, **kwargs):
            OTHER_PACK_CALLS.append(q.shape[0])
            return func(q, k, v * scale, *args, **kwargs)

        patched = model.clone()
        patched.model_options["transformer_options"]["optimized_attention_override"] = other_override
        return io.NodeOutput(patched)


class TestFixtures(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [TinyModelLoader, CaptureLatent, ReferenceAttention, OtherPackAttention, OtherPackAttentionOverride]


async def comfy_entrypoint() -> TestFixtures:
    return TestFixtures()
