"""The names MAL's files and its registered model go by (TAO's checkpoint names), importable without torch."""

EXTENSION = ".pth"
LATEST_NAME = "mal_model_latest"
BEST_NAME = "mal_model_best"
LATEST_FILE = f"{LATEST_NAME}{EXTENSION}"
BEST_FILE = f"{BEST_NAME}{EXTENSION}"
EPOCH_TEMPLATE = "model_epoch_{epoch:03d}"
STEP_TEMPLATE = "model_epoch_{epoch:03d}_step_{step:05d}"
REGISTERED_MODEL = "mal"  # its name in a model registry (MLflow)
