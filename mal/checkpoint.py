"""Checkpoints: finding the latest, safe loading (`weights_only=True`, never unpickling), atomic saving, and
the weights-only export that promotion writes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from mal.errors import UserError
from mal.names import REGISTERED_MODEL, latest  # noqa: F401  latest: callers find it here too
from plumbing import torch_files
from plumbing.storage import resolve_registered

# Registered-model references (`models:/mal@champion`, or `champion` for short) are resolved by whichever
# installed package offers a resolver in this entry-point group (automl does, through MLflow), so mal
# needs no MLflow.
RESOLVER_GROUP = "mal.model_uris"


def resolve(location: str | Path) -> str:
    """A checkpoint path as given, or the local weights file of a registered model reference."""
    return resolve_registered(str(location), RESOLVER_GROUP, REGISTERED_MODEL)


def load(path: str | Path, *, mmap: bool = False, foreign: bool = False) -> dict[str, Any]:
    """A checkpoint file, or a registered model's weights file, read safely (plumbing.torch_files.load)."""
    return torch_files.load(resolve(path), mmap=mmap, foreign=foreign)


def check_training_checkpoint(path: str | Path) -> None:
    """What Lightning needs to resume (weights and optimizer state), checked before a run starts."""
    checkpoint = load(path, mmap=True)
    torch_files.require_resumable(checkpoint, path)
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
    """The weights-only state dict (student.* and teacher.*) of a training checkpoint, written to `target`,
    with the binarisation threshold chosen in training when there is one (a float beside the tensors:
    `network_state` reads tensors only)."""
    from mal.threshold_choice import CHECKPOINT_KEY

    checkpoint = load(checkpoint_path)
    weights: dict[str, Any] = dict(network_state(checkpoint))
    if checkpoint.get(CHECKPOINT_KEY) is not None:
        weights[CHECKPOINT_KEY] = float(checkpoint[CHECKPOINT_KEY])
    return torch_files.save_atomic(weights, target)


