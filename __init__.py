"""Prompt-to-Prompt image editing for ComfyUI (Hertz et al., 2022).

ComfyUI imports this package and calls `comfy_entrypoint`. The package itself imports nothing of
ComfyUI at import time, so tools such as pytest can import it outside a running host.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from comfy_api.latest import ComfyExtension, io

    from .host.routes import register_routes
    from .nodes import NODES

    register_routes()

    class PromptToPrompt(ComfyExtension):
        async def get_node_list(self) -> list[type[io.ComfyNode]]:
            return list(NODES)

    return PromptToPrompt()
