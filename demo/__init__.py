"""The pack's built-in demo model: procedural scenes, a small pixel-space UNet and its training script."""
