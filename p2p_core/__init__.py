"""Prompt-to-Prompt, node-agnostic: alignment, schedules, attention edits. Pure torch, no ComfyUI.

UNet cross/self-attention: attention.py, edits.py, maps.py, blending.py. Diffusion transformers' joint
attention (Flux, SD3/3.5, Qwen-Image, Z-Image): joint.py (the edited call and its reference),
joint_maps.py (word maps for local blend and masks), joint_plan.py (blocks, windows, word weights).
"""
