"""Checkpoint names (TAO's), finding the latest, and safe loading (`weights_only=True`, never unpickling)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mal.errors import UserError
from mal.storage import is_registered_model

EXTENSION = ".pth"
LATEST_NAME = "mal_model_latest"
BEST_NAME = "mal_model_best"
EPOCH_TEMPLATE = "model_epoch_{epoch:03d}"
STEP_TEMPLATE = "model_epoch_{epoch:03d}_step_{step:05d}"


def latest(train_dir: str | Path) -> Path | None:
    path = Path(train_dir) / f"{LATEST_NAME}{EXTENSION}"
    return path if path.is_file() else None


# Registered-model references (`champion`, `models:/mal@champion`) are resolved by whichever installed
# package offers a resolver in this entry-point group (automl does, through MLflow), so mal needs no MLflow.
RESOLVER_GROUP = "mal.model_uris"


def resolve(location: str | Path) -> str:
    """A checkpoint path as given, or the local weights file of a registered model reference."""
    text = str(location)
    if not is_registered_model(text):
        return text
    from importlib.metadata import entry_points

    resolvers = list(entry_points(group=RESOLVER_GROUP))
    if not resolvers:
        raise UserError(f"{text}: registered models need the automl package (MLflow registry); none is installed")
    return resolvers[0].load()(text)


def load(path: str | Path) -> dict[str, Any]:
    path = resolve(path)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None


def network_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The MAL network's state dict (student.* and teacher.*) from a training checkpoint or a weights file."""
    state = checkpoint.get("state_dict", checkpoint)
    state = {k.removeprefix("net."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not any(k.startswith("student.") for k in state):
        raise UserError("checkpoint holds no MAL network (no student.* weights)")
    return state


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save through a temp file and a rename: a kill mid-save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        try:
            torch.save(obj, tmp)
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)
    return path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with temp + rename for local files (its own writes in place)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            save_atomic(checkpoint, path)
