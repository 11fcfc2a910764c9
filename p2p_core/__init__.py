"""Prompt-to-Prompt, node-agnostic: alignment, schedules, attention edits. Pure torch, no ComfyUI."""
