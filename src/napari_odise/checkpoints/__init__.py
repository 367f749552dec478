"""Checkpoint files -> model weights: reading the official layouts (ODISE heads, Stable Diffusion
v1 in the ldm or diffusers layout, OpenAI/open_clip CLIP), mapping their keys onto ours, strict
key/shape checks, and loading a ready model by name or path.

Kept apart from :mod:`napari_odise.model`, which is only the network and never reads files.
"""
