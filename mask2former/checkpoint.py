"""Mask2Former's checkpoints: the latest of a run, registered models (`champion`, `models:/...`), the network's
tensors and what they were trained on (categories), shape checks against a spec, and the export promotion keeps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from mask2former.names import LATEST_FILE, REGISTERED_MODEL
from plumbing import torch_files
from plumbing.errors import UserError
from plumbing.storage import resolve_registered

RESOLVER_GROUP = "mask2former.model_uris"  # automl offers its MLflow resolver here, as it does to mal
NETWORK_PREFIX = "net."  # the LightningModule's attribute holding the network


def latest(train_dir: str | Path) -> Path | None:
    path = Path(train_dir) / LATEST_FILE
    return path if path.is_file() else None


def resolve(location: str | Path) -> str:
    """A checkpoint path as given, or the local weights file of a registered model reference."""
    return resolve_registered(str(location), RESOLVER_GROUP, REGISTERED_MODEL)


def load(path: str | Path, *, mmap: bool = False, foreign: bool = False) -> dict[str, Any]:
    """A checkpoint file, or a registered model's weights file, read safely (plumbing.torch_files.load)."""
    return torch_files.load(resolve(path), mmap=mmap, foreign=foreign)


def network_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The network's tensors (keys as Mask2FormerNet names them) from a training checkpoint or an export."""
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, dict):
        raise UserError(f"its state_dict is a {type(state).__name__}, not a dict of weights")
    state = {k.removeprefix(NETWORK_PREFIX): v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not any(k.startswith("model.model.") for k in state):
        raise UserError("holds no Mask2Former network (no model.model.* weights)")
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise UserError(f"its weights are not finite: {key} holds NaN or inf (a diverged training?)")
    return state


def trained_on(checkpoint: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[int, int]] | None:
    """The categories and category id -> class index a checkpoint was trained with, when it says."""
    categories, indices = checkpoint.get("categories"), checkpoint.get("class_indices")
    if not (isinstance(categories, list) and isinstance(indices, dict)):
        return None
    return categories, {int(cid): int(index) for cid, index in indices.items()}


def model_shapes(spec: Any) -> dict[str, torch.Tensor]:
    """The tensors the spec's network has (built on the meta device: no memory, no init)."""
    from mask2former.network import Mask2FormerNet

    d = spec.dataset
    with torch.device("meta"):
        return Mask2FormerNet(spec.model, spec.model.sem_seg_head.num_classes, d.pixel_mean, d.pixel_std).state_dict()


def check_fits(path: str | Path, expected: dict[str, torch.Tensor]) -> None:
    """Every tensor of the checkpoint has the shape of the spec's network, and none is missing: another
    backbone or head size would fail deep inside the load."""
    try:
        state = network_state(load(path, mmap=True, foreign=True))
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    for key, want in expected.items():
        have = state.get(key)
        if have is None:
            raise UserError(f"{path} does not fit the spec's model: it has no {key} (another model.backbone.type?)")
        if tuple(have.shape) != tuple(want.shape):
            raise UserError(
                f"{path} does not fit the spec's model: {key} is {list(have.shape)} there and {list(want.shape)} "
                "here (other model.* settings)"
            )


def check_training_checkpoint(path: str | Path) -> None:
    """What Lightning needs to resume (weights and optimizer state), checked before a run starts."""
    torch_files.require_resumable(load(path, mmap=True), path)


def export_weights(checkpoint_path: str | Path, target: str | Path) -> Path:
    """The network's tensors and the categories it predicts (plain data, weights-only loadable), for best/."""
    checkpoint = load(checkpoint_path)
    exported: dict[str, Any] = {"state_dict": network_state(checkpoint)}
    known = trained_on(checkpoint)
    if known:
        exported["categories"] = known[0]
        exported["class_indices"] = {str(cid): index for cid, index in known[1].items()}
    return torch_files.save_atomic(exported, target)
