"""The names Mask2Former's files and its registered model go by (TAO's checkpoint names), importable without torch."""

from plumbing.lightning_run import EPOCH_TEMPLATE, EXTENSION, STEP_TEMPLATE

__all__ = ["BEST_FILE", "BEST_NAME", "EPOCH_TEMPLATE", "EXTENSION", "LATEST_FILE", "LATEST_NAME", "METRICS_FILE",
           "PREDICTIONS_FILE", "REGISTERED_MODEL", "STEP_TEMPLATE"]  # fmt: skip

LATEST_NAME = "mask2former_model_latest"
BEST_NAME = "mask2former_model_best"
LATEST_FILE = f"{LATEST_NAME}{EXTENSION}"
BEST_FILE = f"{BEST_NAME}{EXTENSION}"
METRICS_FILE = "metrics.json"  # `mask2former evaluate`, under the evaluate folder
PREDICTIONS_FILE = "instances_predicted.json"  # `mask2former inference`, under the inference folder
REGISTERED_MODEL = "mask2former"  # its name in a model registry (MLflow)
