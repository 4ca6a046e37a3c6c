"""The entry points behind `mal train | evaluate | inference`: data, model and Trainer built from a spec,
run on the chosen devices, and the contract's files written."""

from mal.runner.evaluate import evaluate, load_module
from mal.runner.labeling import ENGINE_GROUP, Labeler, infer, label_locally
from mal.runner.train import FitResult, OutOfMemory, fit

__all__ = [
    "ENGINE_GROUP",
    "FitResult",
    "Labeler",
    "OutOfMemory",
    "evaluate",
    "fit",
    "infer",
    "label_locally",
    "load_module",
]
