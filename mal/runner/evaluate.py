"""`mal evaluate`: a trained MAL loaded from its checkpoint, scored on dataset.val_* (box_score; mIoU and mask AP
on the boxes with ground-truth masks)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from mal import checkpoint as ckpt
from mal import threshold_choice
from mal.errors import UserError
from mal.module import MALModule, compute_metrics, validation_records
from mal.objective import has_masks
from mal.predict import thresholds_by_bucket
from mal.runner.loaders import loader, validation_set
from mal.spec import ExperimentSpec
from mal.spec.outputs import metrics_location
from plumbing.coco import CocoSet
from plumbing.devices import autocast, device, to_device
from plumbing.files import atomic_write_text, is_remote
from plumbing.storage import write_remote_text

log = logging.getLogger("mal")


def load_module(spec: ExperimentSpec, checkpoint_path: str, val_coco: CocoSet | None = None) -> MALModule:
    """A MALModule with a checkpoint's weights; a mismatch with model.* names what the checkpoint was."""
    raw = ckpt.load(checkpoint_path, foreign=True)
    module = MALModule(spec, val_coco)
    state = ckpt.network_state(raw)
    if not any(k.startswith("teacher.") for k in state):  # a student-only weights file: the teacher is its copy
        state |= {f"teacher.{k.removeprefix('student.')}": v for k, v in state.items()}
    trained = raw.get("mal_spec", {}).get("model", {})
    hint = f" (it was trained with model.arch={trained.get('arch')})" if trained else ""
    try:
        result = module.net.load_state_dict(state, strict=False)
    except RuntimeError:  # a tensor of the wrong shape
        raise UserError(f"{checkpoint_path} does not fit model.arch={spec.model.arch} and its head settings{hint}") from None
    if result.missing_keys:
        raise UserError(
            f"{checkpoint_path} does not fit model.arch={spec.model.arch}: it has no {result.missing_keys[0]} "
            f"(+{len(result.missing_keys) - 1} more){hint}"
        )
    ignored = f"; ignored {len(result.unexpected_keys)} others, e.g. {result.unexpected_keys[0]}" if result.unexpected_keys else ""
    log.warning("loaded %d tensors (student and teacher) from %s%s", len(state) - len(result.unexpected_keys), checkpoint_path, ignored)
    chosen = raw.get(threshold_choice.CHECKPOINT_KEY)
    if chosen is not None and spec.train.choose_mask_thres is not False:
        module.use_threshold(threshold_choice.checked(chosen, str(checkpoint_path)))
        log.warning("binarising at mask_thres %g, chosen in training on its val set (train.choose_mask_thres=false for the spec's)", module.chosen_threshold)
    return module.eval()


def write_json(data: Any, location: str | Path) -> str | Path:
    """Strict JSON (a NaN or inf, which JSON has no word for, is written as null) to a path or a URI."""
    text = json.dumps(_finite(data), allow_nan=False)
    if is_remote(location):
        return write_remote_text(str(location), text)
    return atomic_write_text(Path(location), text)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def evaluate(spec: ExperimentSpec) -> tuple[dict[str, float], str | Path]:
    """box_score, mIoU (all/small/medium/large), mask AP and AP50 of evaluate.checkpoint on dataset.val_*; the
    mask metrics are null (with a note) when no box has a ground-truth mask."""
    e = spec.evaluate
    records, val_coco = evaluation_records(spec)
    metrics = compute_metrics(records, val_coco.raw)
    metrics["checkpoint"] = str(e.checkpoint)
    clean = _finite(metrics)
    if not has_masks(val_coco):
        clean["note"] = f"{spec.dataset.val_ann_path} has no ground-truth masks: mIoU and mask AP are null, box_score scores the boxes"
    return clean, write_json(clean, metrics_location(spec))


def evaluation_records(spec: ExperimentSpec) -> tuple[list[dict[str, Any]], CocoSet]:
    """Every val box's validation record (mal.module.validation_records: its IoU and its mask as a detection)
    from evaluate.checkpoint, and the val set."""
    e = spec.evaluate
    val_coco, val_set = validation_set(spec)
    on = device(e.num_gpus)
    module = load_module(spec, e.checkpoint, val_coco).to(on)
    batches = loader(val_set, e.batch_size, spec.dataset.num_workers_per_gpu)
    module.on_validation_epoch_start()
    with torch.inference_mode(), autocast(on, spec.train.use_amp):
        for i, batch in enumerate(batches):
            module.validation_step(to_device(batch, on), i)
    return module._records, val_coco


FILLED_BOX_LOGIT = 20.0  # sigmoid(±20) is 1 or 0 to float precision: the box, binarised at any threshold


def box_fill(spec: ExperimentSpec) -> dict[str, float]:
    """The metrics of the filled box taken as the mask, on dataset.val_*: through the validation's own crops,
    paste-back and scores, so that it is the floor a trained model's figures are read against."""
    val_coco, val_set = validation_set(spec)
    anns = {a["id"]: a for a in val_coco.anns}
    thresholds = thresholds_by_bucket(spec.train.mask_thres)
    records = []
    for batch in loader(val_set, spec.evaluate.batch_size, spec.dataset.num_workers_per_gpu):
        logits = (batch["boxmask"].float() * 2 - 1) * FILLED_BOX_LOGIT
        records += validation_records(logits, batch, thresholds, anns, force=False)
    return _finite(compute_metrics(records, val_coco.raw))
