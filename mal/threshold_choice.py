"""The binarisation threshold chosen on the val set (train.choose_mask_thres).

MAL binarises at a fixed mask_thres (0.1 in the paper). A network trained on boxes alone is nearly
saturated inside the object, so any threshold gives about the same mask. One that also learned from points
or scribbles has graded probabilities, and there the fixed 0.1 keeps too much: measured on coco128-seg val
with 3 clicks per training box, mIoU 0.641 at 0.1 and 0.681 at 0.5. So at every validation the masks are
binarised at each threshold of GRID and the one with the best mIoU is kept: the checkpoint carries it, and
`mal evaluate` and `mal inference` binarise with it. It is chosen on the val set, like the best epoch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mal.errors import UserError
from mal.metrics import class_balanced_mean
from mal.predict import InstanceMask

__all__ = ["CHECKPOINT_KEY", "GRID", "at_thresholds", "checked", "choose"]

GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
CHECKPOINT_KEY = "mal_mask_thres"  # in training checkpoints and in the weights file promotion exports


def at_thresholds(inst: InstanceMask, grid: tuple[float, ...]) -> list[InstanceMask]:
    """The mask binarised at each threshold of `grid` (the instance must keep its probabilities)."""
    if inst.prob is None:
        raise ValueError("at_thresholds needs a mask pasted with keep_prob=True")
    out = []
    for t in grid:
        mask = inst.prob > t
        score = (
            float(inst.prob[mask].mean())
            if mask.any()
            else float(inst.prob.mean())
            if inst.prob.size
            else 0.0
        )
        out.append(dataclasses.replace(inst, mask=mask, score=score, prob=None))
    return out


def choose(
    records: list[dict[str, Any]], grid: tuple[float, ...], prefer: float
) -> tuple[float | None, list[dict[str, Any]]]:
    """The threshold of `grid` with the best class-balanced mIoU over the records that have `iou_at`, and
    the records read at it (`iou` and `det` from `iou_at[j]` and `det_at[j]`, box_score and its parts from
    `scores_at[j]` where a record has them, masked or not). Ties go to the threshold nearest `prefer` (the
    spec's), so a saturated network keeps it. (None, records) when no record has a mask.
    """
    scored = [r for r in records if "iou_at" in r]
    if not scored:
        return None, records
    categories = [r["category_id"] for r in scored]
    means = [class_balanced_mean([r["iou_at"][j] for r in scored], categories) for j in range(len(grid))]
    best = max(range(len(grid)), key=lambda j: (means[j], -abs(grid[j] - prefer)))
    read = []
    for r in records:
        plain = {k: v for k, v in r.items() if k not in ("iou_at", "det_at", "scores_at")}
        if "scores_at" in r:
            plain.update(r["scores_at"][best])
        if "iou_at" in r:
            plain["iou"], plain["det"] = r["iou_at"][best], r["det_at"][best]
        read.append(plain)
    return grid[best], read


def checked(value: Any, source: str) -> float:
    """A threshold read from a checkpoint, refused unless it is a number in (0, 1)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value < 1
    ):
        raise UserError(f"{source}: its {CHECKPOINT_KEY} {value!r} is not a threshold in (0, 1)")
    return float(value)
