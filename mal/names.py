"""The names MAL's files and its registered model go by (TAO's checkpoint names), and where the latest
checkpoint is: importable without torch."""

from pathlib import Path

from plumbing.lightning_run import EPOCH_TEMPLATE, EXTENSION, STEP_TEMPLATE

__all__ = ["BEST_FILE", "BEST_NAME", "EPOCH_TEMPLATE", "EXTENSION", "LATEST_FILE", "LATEST_NAME", "REGISTERED_MODEL", "STEP_TEMPLATE", "latest"]

LATEST_NAME = "mal_model_latest"
BEST_NAME = "mal_model_best"
LATEST_FILE = f"{LATEST_NAME}{EXTENSION}"
BEST_FILE = f"{BEST_NAME}{EXTENSION}"
REGISTERED_MODEL = "mal"  # its name in a model registry (MLflow)


def latest(train_dir: str | Path) -> Path | None:
    """The training folder's latest checkpoint, which a training resumes from, if there is one."""
    path = Path(train_dir) / LATEST_FILE
    return path if path.is_file() else None
