"""The names MAL's files and its registered model go by (TAO's checkpoint names), importable without torch."""

from plumbing.lightning_run import EPOCH_TEMPLATE, EXTENSION, STEP_TEMPLATE

__all__ = ["BEST_FILE", "BEST_NAME", "EPOCH_TEMPLATE", "EXTENSION", "LATEST_FILE", "LATEST_NAME", "REGISTERED_MODEL", "STEP_TEMPLATE"]

LATEST_NAME = "mal_model_latest"
BEST_NAME = "mal_model_best"
LATEST_FILE = f"{LATEST_NAME}{EXTENSION}"
BEST_FILE = f"{BEST_NAME}{EXTENSION}"
REGISTERED_MODEL = "mal"  # its name in a model registry (MLflow)
