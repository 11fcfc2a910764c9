"""Socket types the pack adds to ComfyUI."""

from comfy_api.latest import io

P2PPrompts = io.Custom("P2P_PROMPTS")
"""A PromptSet: the source and target prompts as the model tokenized them."""

CATEGORY = "Prompt-to-Prompt"

P2PInversion = io.Custom("P2P_INVERSION")
"""A p2p_core.inversion.Trajectory: the states of an inversion, per sigma, in the sampler's space."""
