"""Checkpoints: finding the latest, safe loading (`weights_only=True`, never unpickling), atomic saving, and
the weights-only export that promotion writes."""

from __future__ import annotations

import argparse
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from mal import safe_pickle
from mal.errors import UserError
from mal.names import CHAMPION, LATEST_FILE, REGISTERED_MODEL
from mal.storage import is_registered_model


def latest(train_dir: str | Path) -> Path | None:
    path = Path(train_dir) / LATEST_FILE
    return path if path.is_file() else None


# Registered-model references (`models:/mal@champion`, or `champion` for short) are resolved by whichever
# installed package offers a resolver in this entry-point group (automl does, through MLflow), so mal
# needs no MLflow.
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
    return resolvers[0].load()(f"models:/{REGISTERED_MODEL}@{CHAMPION}" if text == CHAMPION else text)


def load(path: str | Path, *, mmap: bool = False, foreign: bool = False) -> dict[str, Any]:
    """torch.load that never runs code from the file: tensors and plain containers only, anything else is
    refused with one line. `mmap` maps tensors lazily (a cheap check of a big file). `foreign` files (written
    by other programs: MAE, timm, NVlabs' MAL) go through mal.safe_pickle, which also reads pickle protocol 4
    and keeps data-only objects (argparse.Namespace, paths) as inert records."""
    path = resolve(path)
    _require_regular_file(Path(path))
    mmap = mmap and zipfile.is_zipfile(path)  # only the zip format (torch >= 1.6) can be mapped
    how = {"weights_only": False, "pickle_module": safe_pickle} if foreign else {"weights_only": True}
    try:
        # MAE's training checkpoints carry their argparse.Namespace: plain data, so it is allowed.
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")  # torch warns about a pickle protocol before it refuses the file
            checkpoint = torch.load(str(path), map_location="cpu", mmap=mmap, **how)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"checkpoint {path} is a folder, not a .pth file") from None
    except pickle.UnpicklingError as exc:
        raise UserError(f"checkpoint {path} refused: {_refusal(exc)}") from None
    except PermissionError as exc:
        raise UserError(f"cannot read checkpoint {path}: {exc.strerror}") from None
    except Exception:  # noqa: BLE001 - torch's own errors for foreign files say little a user can act on
        raise UserError(
            f"checkpoint {path} is not a torch checkpoint (empty, cut short, or another kind of file)"
        ) from None
    if not isinstance(checkpoint, dict):
        raise UserError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a dict of weights")
    return checkpoint


def _require_regular_file(path: Path) -> None:
    """A FIFO or a device would block the read forever or stream without end: only regular files are read."""
    if path.exists() and not path.is_file() and not path.is_dir():
        raise UserError(f"checkpoint {path} is not a regular file (a pipe, socket or device)")


_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def _refusal(exc: pickle.UnpicklingError) -> str:
    """Why the weights-only unpickler stopped, without torch's advice to retry unsafely."""
    blocked = _BLOCKED_GLOBAL.search(str(exc))
    if blocked:
        return f"it would import {blocked[1]}, and checkpoints are loaded weights-only (no code, no objects)"
    return "not a weights-only torch checkpoint (corrupt, or a pickle of Python objects)"


def check_training_checkpoint(path: str | Path) -> None:
    """What Lightning needs to resume (weights and optimizer state), checked before a run starts."""
    checkpoint = load(path, mmap=True)
    if not isinstance(checkpoint.get("state_dict"), dict) or "optimizer_states" not in checkpoint:
        raise UserError(
            f"{path} is not a training checkpoint (no optimizer state) and cannot be resumed; "
            "to start from its weights, set train.pretrained_model_path instead"
        )
    try:
        network_state(checkpoint)
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None


def check_fits(path: str | Path, expected: dict[str, torch.Tensor]) -> None:
    """Every network tensor of the checkpoint has the shape of the model the spec builds (other head sizes
    or another arch would fail deep inside Lightning's restore)."""
    for key, tensor in network_state(load(path, mmap=True)).items():
        want = expected.get(key)
        if want is not None and tuple(want.shape) != tuple(tensor.shape):
            raise UserError(
                f"{path} does not fit the spec's model: {key} is {list(tensor.shape)} there and {list(want.shape)} "
                "here (other model.* settings)"
            )


_CONV_MODULE = re.compile(r"(\.convs\.\d+)\.conv\.(weight|bias)$")


def canonical_key(key: str) -> str:
    """Our name for a MAL tensor: the original MAL's mmcv `ConvModule` heads (`convs.N.conv.weight`) are
    plain convs here (`convs.N.weight`)."""
    return _CONV_MODULE.sub(r"\1.\2", key)


def network_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The MAL network's state dict (student.* and teacher.*) from a training checkpoint or a weights file."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise UserError(f"checkpoint's state_dict is a {type(state).__name__}, not a dict of weights")
    state = {canonical_key(k.removeprefix("net.")): v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not any(k.startswith("student.") for k in state):
        raise UserError("checkpoint holds no MAL network (no student.* weights)")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"checkpoint weights are not finite: {key} holds NaN or inf (a diverged training?)")
    return state


def export_weights(checkpoint_path: str | Path, target: str | Path) -> Path:
    """The weights-only state dict (student.* and teacher.*) of a training checkpoint, written to `target`."""
    return save_atomic(network_state(load(checkpoint_path)), target)


def save_atomic(obj: Any, path: str | Path) -> Path:
    """torch.save through a temp file and a rename: a kill mid-save leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a hidden name next to the target: what a killed save leaves behind is easy to tell from a checkpoint
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as tmp:
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
