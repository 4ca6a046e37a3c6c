"""Which boxes a run uses: the training boxes (size window, no slivers, no crowds) and every box for
evaluation. Without torch, so that a study's pre-flight check in the driver imports none."""

from __future__ import annotations

from mal.errors import UserError
from plumbing.coco import CocoSet

MIN_SIDE_PX = 2


def train_instances(coco: CocoSet, min_obj_size: float, max_obj_size: float) -> tuple[list[dict], int]:
    """Boxes MAL learns from (size window, w and h > 2 px, no crowds) and how many were skipped."""
    kept = [
        ann
        for ann in coco.anns
        if min_obj_size < ann["bbox"][2] * ann["bbox"][3] < max_obj_size
        and ann["bbox"][2] > MIN_SIDE_PX
        and ann["bbox"][3] > MIN_SIDE_PX
        and not ann.get("iscrowd")
    ]
    return kept, len(coco.anns) - len(kept)


def usable_train_instances(coco: CocoSet, min_obj_size: float, max_obj_size: float) -> tuple[list[dict], int]:
    """`train_instances`, refusing a training set that leaves no box to learn from."""
    kept, skipped = train_instances(coco, min_obj_size, max_obj_size)
    if not kept:
        raise UserError(
            f"{coco.source}: no training box passes dataset.min_obj_size={min_obj_size:g} < w*h < "
            f"max_obj_size={max_obj_size:g} (and w, h > {MIN_SIDE_PX}, not crowd)"
        )
    return kept, skipped


def eval_instances(coco: CocoSet) -> list[dict]:
    """Every box, crowds and tiny ones too: evaluation and inference decide, so nothing is dropped silently."""
    return list(coco.anns)
