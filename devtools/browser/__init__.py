"""Headless Chromium driving ComfyUI's real frontend: the DevTools-protocol client (`cdp`), opening the
frontend and dropping a workflow on it (`frontend`), and the builder of the shipped workflows."""
