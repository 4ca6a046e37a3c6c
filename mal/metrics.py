"""MAL's mIoU (class-balanced mean of per-instance mask IoU, split by box size) and COCO mask AP."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from plumbing.coco_eval import mask_ap

SMALL_MAX_AREA = 32**2
MEDIUM_MAX_AREA = 96**2
BUCKETS = ("small", "medium", "large")


def area_bucket(area: float) -> str:
    """COCO's size buckets with half-open ranges, so areas of exactly 32² and 96² land somewhere."""
    if area < SMALL_MAX_AREA:
        return "small"
    if area < MEDIUM_MAX_AREA:
        return "medium"
    return "large"


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two binary masks of the same shape; two empty masks count as 0 (nothing was found)."""
    pred = pred.astype(bool, copy=False)
    gt = gt.astype(bool, copy=False)
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else 0.0


class MIoU:
    """Accumulates per-instance IoUs; reports the class-balanced mean overall and per size bucket."""

    def __init__(self) -> None:
        self.records: list[tuple[int, str, float]] = []

    def add(self, iou: float, category_id: int, box_area: float) -> None:
        self.records.append((int(category_id), area_bucket(box_area), float(iou)))

    def extend(self, ious: Iterable[float], category_ids: Iterable[int], box_areas: Iterable[float]) -> None:
        for iou, cat, area in zip(ious, category_ids, box_areas, strict=True):
            self.add(iou, cat, area)

    @staticmethod
    def _class_balanced(records: list[tuple[int, str, float]]) -> float:
        per_class: dict[int, list[float]] = defaultdict(list)
        for cat, _, iou in records:
            per_class[cat].append(iou)
        if not per_class:
            return float("nan")  # an empty bucket has no mean; reported as null, never as 0
        return float(np.mean([np.mean(v) for v in per_class.values()]))

    def compute(self) -> dict[str, float]:
        out = {"mIoU": self._class_balanced(self.records), "num_instances": len(self.records)}
        for bucket in BUCKETS:
            out[f"mIoU_{bucket}"] = self._class_balanced([r for r in self.records if r[1] == bucket])
        return out


def class_balanced_mean(values: Iterable[float], category_ids: Iterable[int]) -> float:
    """The mean of each category's mean (NaN for no values): every class weighs the same, as in mIoU."""
    acc = MIoU()
    for value, cat in zip(values, category_ids, strict=True):
        acc.add(value, cat, 0.0)
    return acc.compute()["mIoU"]


def class_balanced_miou(ious: Iterable[float], category_ids: Iterable[int]) -> float:
    """Convenience for one-off figures (e.g. the box-fill baseline)."""
    return class_balanced_mean(ious, category_ids)


def region_iou(pred_region: np.ndarray, region: tuple[int, int, int, int], gt_full: np.ndarray) -> float:
    """IoU of a mask stored only inside `region` with a full-image GT mask (exact: GT outside counts)."""
    y0, y1, x0, x1 = region
    gt = gt_full.astype(bool, copy=False)
    inter = np.logical_and(pred_region, gt[y0:y1, x0:x1]).sum()
    union = pred_region.sum() + gt.sum() - inter
    return float(inter / union) if union else 0.0


def coco_mask_ap(gt_dataset: dict, detections: list[dict]) -> dict[str, float]:
    """Mask AP and AP50 over the images that have detections (MAL answers every box of those it labels)."""
    ap = mask_ap(gt_dataset, detections, image_ids={d["image_id"] for d in detections})
    return {"mask_AP": ap["mask_AP"], "mask_AP50": ap["mask_AP50"]}
