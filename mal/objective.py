"""Which validation metric judges a MAL run (its best checkpoint, a study's objective), and whether the
validation set can measure it: mIoU and mask AP need ground-truth masks, box_score needs boxes only."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mal.metrics import BUCKETS
from plumbing.errors import UserError
from plumbing.wording import did_you_mean

if TYPE_CHECKING:
    from plumbing.coco import CocoSet

MASK_METRICS = ("mIoU", *(f"mIoU_{bucket}" for bucket in BUCKETS), "mask_AP", "mask_AP50")
BOX_METRICS = ("box_score", "box_projection", "box_edge")  # the score and two diagnostics (mal/box_score.py)
# Every validation metric MAL reports, all higher-is-better; the first is a study's default objective.
METRICS = {name: "max" for name in (*MASK_METRICS, *BOX_METRICS)}


def has_masks(coco: CocoSet) -> bool:
    """Whether any non-crowd box has a ground-truth mask to score mIoU against."""
    return any(ann.get("segmentation") and not ann.get("iscrowd") for ann in coco.anns)


def study_metric(spec: Any) -> str | None:
    """`automl.metric` of the spec: its section is automl's settings, or a plain mapping without automl."""
    section = spec.automl
    return section.get("metric") if isinstance(section, dict) else getattr(section, "metric", None)


def judged_by(spec: Any, val_coco: CocoSet, default: str | None = None) -> str:
    """The metric that picks the best checkpoint: automl.metric, else `default`, else mIoU where the validation
    set has masks and box_score where it has boxes only. A mask metric on a box-only set is a user error."""
    metric = study_metric(spec) or default
    masks = has_masks(val_coco)
    if metric is None:
        return "mIoU" if masks else "box_score"
    if metric not in METRICS:
        raise UserError(
            f"automl.metric: {metric!r} is not a metric mal reports{did_you_mean(metric, METRICS)}; "
            f"choose from {', '.join(METRICS)}"
        )
    if metric in MASK_METRICS and not masks:
        raise UserError(
            f"automl.metric={metric} needs ground-truth masks, but dataset.val_ann_path {val_coco.source!r} "
            "has boxes only; score the run from boxes with automl.metric=box_score"
        )
    return metric
