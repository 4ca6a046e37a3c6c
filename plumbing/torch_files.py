"""Torch files read without running their code (weights-only, or a data-only unpickler for files other
programs wrote) and written atomically (temp file + rename), for every model's checkpoints."""

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

from plumbing import safe_pickle
from plumbing.errors import UserError


def load(path: str | Path, *, mmap: bool = False, foreign: bool = False) -> dict[str, Any]:
    """torch.load that never runs code from the file: tensors and plain containers only, anything else is
    refused with one line. `mmap` maps tensors lazily (a cheap check of a big file). `foreign` files (written
    by other programs: MAE, timm, NVlabs' MAL) go through plumbing.safe_pickle, which also reads pickle protocol 4
    and keeps data-only objects (argparse.Namespace, paths) as inert records."""
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


def require_resumable(checkpoint: dict[str, Any], path: str | Path) -> None:
    """What Lightning needs to resume (weights and optimizer state), checked before a run starts."""
    if not isinstance(checkpoint.get("state_dict"), dict) or "optimizer_states" not in checkpoint:
        raise UserError(
            f"{path} is not a training checkpoint (no optimizer state) and cannot be resumed; "
            "to start from its weights, set train.pretrained_model_path instead"
        )


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
