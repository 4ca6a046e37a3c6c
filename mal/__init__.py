"""Mask Auto-Labeler (MAL): box-supervised instance masks with a ViT encoder and a K·V mask decoder.

Its modules are imported one by one (the spec and the CLI without torch); `__all__` names the public ones.
"""

__version__ = "0.1.0"

__all__ = [
    "archs",
    "checkpoint",
    "cli",
    "coco",
    "data",
    "errors",
    "losses",
    "metrics",
    "model",
    "module",
    "names",
    "predict",
    "runner",
    "spec",
    "storage",
    "synthetic",
    "tunable",
]
