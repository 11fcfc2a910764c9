"""The one schema shape of the fixture nodes that patch a model: MODEL and a few settings in, MODEL out."""

from __future__ import annotations

from comfy_api.latest import io


def model_patch_schema(node_id: str, *settings: io.Input) -> io.Schema:
    """A test node `node_id` (category "testing") taking a model and `settings`, giving the patched model."""
    return io.Schema(
        node_id=node_id, category="testing", inputs=[io.Model.Input("model"), *settings], outputs=[io.Model.Output()]
    )
