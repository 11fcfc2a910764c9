"""Prompt-to-Prompt image editing for ComfyUI (Hertz et al., 2022)."""

from comfy_api.latest import ComfyExtension, io

from .nodes import NODES

WEB_DIRECTORY = "./web"


class PromptToPrompt(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return list(NODES)


async def comfy_entrypoint() -> PromptToPrompt:
    return PromptToPrompt()
