"""Inference: the public `Model` (liif/__init__ re-exports its loaders), the tiled engine that predicts any size on a memory budget, memory planning, and task=demo (upscale one image)."""
