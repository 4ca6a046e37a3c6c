"""Mask2Former's actions as functions: train (`fit`), `evaluate`, and `infer` (inference)."""

from mask2former.runner.evaluate import evaluate, infer
from mask2former.runner.train import fit

__all__ = ["evaluate", "fit", "infer"]
