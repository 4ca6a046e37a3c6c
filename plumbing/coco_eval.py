"""Mask AP of instance detections against a COCO file, by pycocotools' COCOeval, for every model's metrics."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterable

from plumbing.coco import annotation_area
from plumbing.coco_values import usable_polygons

# COCOeval's first six summary numbers, in its order
AP_NAMES = ("mask_AP", "mask_AP50", "mask_AP75", "mask_AP_small", "mask_AP_medium", "mask_AP_large")
AGNOSTIC_CATEGORY = {"id": 1, "name": "object"}


def mask_ap(
    gt_dataset: dict, detections: list[dict], image_ids: Iterable[int] | None = None, agnostic: bool = False
) -> dict[str, float]:
    """COCO mask AP (0.5:0.95), AP50, AP75 and AP by object size over `image_ids` (default: every image of the
    file, so an image without detections counts its objects as missed). `agnostic` scores masks without
    their labels: every category is one. A figure with no ground truth in its range is 0, not COCO's -1."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not detections:
        return dict.fromkeys(AP_NAMES, 0.0)
    annotations = scorable(gt_dataset)
    categories = copy.deepcopy(gt_dataset["categories"])
    if agnostic:
        categories = [dict(AGNOSTIC_CATEGORY)]
        annotations = [{**a, "category_id": AGNOSTIC_CATEGORY["id"]} for a in annotations]
        detections = [{**d, "category_id": AGNOSTIC_CATEGORY["id"]} for d in detections]
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt = COCO()
        # COCOeval swaps each GT segmentation for its RLE in place: work on copies, not the caller's annotations
        gt.dataset = {"images": copy.deepcopy(gt_dataset["images"]), "categories": categories, "annotations": annotations}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(detections), iouType="segm")
        ev.params.imgIds = sorted(image_ids) if image_ids is not None else sorted(gt.getImgIds())
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: max(float(value), 0.0) for name, value in zip(AP_NAMES, ev.stats[:6], strict=True)}


def scorable(gt_dataset: dict) -> list[dict]:
    """Copies of the GT annotations COCOeval can score: those with a mask (a box without one is neither a GT
    to find nor one COCOeval can rasterise; polygon parts of fewer than 3 points dropped), with the
    `iscrowd` and `area` it indexes (both optional in a COCO file; the area is the mask's)."""
    sizes = {image["id"]: (image["height"], image["width"]) for image in gt_dataset["images"]}
    kept = []
    for ann in gt_dataset["annotations"]:
        if not ann.get("segmentation"):
            continue
        ann = copy.deepcopy(ann)
        if isinstance(ann["segmentation"], list):
            ann["segmentation"] = usable_polygons(ann["segmentation"])
            if not ann["segmentation"]:
                continue  # only parts of fewer than 3 points: no area to score against
        ann["iscrowd"] = int(ann.get("iscrowd", 0))
        ann["area"] = annotation_area(ann, *sizes[ann["image_id"]])
        kept.append(ann)
    return kept
