"""Masks from boxes without MAL, scored by MAL's own metric code: the filled box, and OpenCV GrabCut
initialised with the box. Both see exactly the instances MAL's evaluation scores (non-crowd, with a mask)."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from mal.coco import CocoSet, gt_mask
from mal.data import box_mask, box_pixels, decode_image
from mal.metrics import MIoU, coco_mask_ap, mask_iou

GRABCUT_ITERATIONS = 5
METHODS = ("box-fill", "grabcut")


def grabcut_mask(image_rgb: np.ndarray, bbox: list[float]) -> np.ndarray | None:
    """GrabCut's foreground on the whole image, initialised with the box (outside it: background); None when
    it cannot run (a box under 2 px, or one covering the whole image: no background to learn from)."""
    height, width = image_rgb.shape[:2]
    x0, y0, x1, y1 = box_pixels(bbox, (height, width))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    labels = np.zeros((height, width), np.uint8)
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(image_rgb[..., ::-1]), labels, (x0, y0, x1 - x0, y1 - y0),
                    background, foreground, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)  # OpenCV wants BGR
    except cv2.error:
        return None
    return ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)


def _scored_instances(coco: CocoSet) -> dict[int, list[dict]]:
    """Per image, the annotations MAL's validation scores: not crowd, with a segmentation."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco.anns:
        if not ann.get("iscrowd", 0) and ann.get("segmentation"):
            by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def _label_image(path: str, anns: list[dict]) -> list[dict[str, Any]]:
    """Both baselines for every scored box of one image: IoU against the GT mask and the mask as RLE."""
    cv2.setRNGSeed(0)  # GrabCut's GMM init is random: the same answer whichever process runs the image
    image = decode_image(path)
    hw = image.shape[:2]
    out = []
    for ann in anns:
        gt = gt_mask(ann, *hw)
        cut = grabcut_mask(image, ann["bbox"])
        masks = {"box-fill": box_mask(ann["bbox"], hw), "grabcut": box_mask(ann["bbox"], hw) if cut is None else cut}
        out.append({
            "ann": ann,
            "grabcut_failed": cut is None,  # it keeps its starting guess, the box
            **{name: (mask_iou(mask, gt), _rle(mask)) for name, mask in masks.items()},
        })
    return out


def score_baselines(coco: CocoSet, processes: int = 1) -> dict[str, dict[str, Any]]:
    """mIoU (class-balanced, small/medium/large) and mask AP of box-fill and GrabCut on every scored box.

    Images are spread over `processes` (GrabCut is single-threaded and slow on whole images).
    """
    by_image = _scored_instances(coco)
    jobs = [(str(coco.image_path(image_id)), anns) for image_id, anns in by_image.items()]
    if processes > 1:
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            labelled = list(pool.map(_label_image, *zip(*jobs, strict=True)))
    else:
        labelled = [_label_image(*job) for job in jobs]
    results = {}
    for name in METHODS:
        acc, detections = MIoU(), []
        for item in (x for per_image in labelled for x in per_image):
            ann = item["ann"]
            iou, rle = item[name]
            acc.add(iou, ann["category_id"], ann["bbox"][2] * ann["bbox"][3])
            # no confidence to rank by: every mask scores 1
            detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle, "score": 1.0})
        results[name] = {**acc.compute(), **coco_mask_ap(coco.raw, detections)}
    results["grabcut"]["fallbacks_to_box"] = sum(x["grabcut_failed"] for per_image in labelled for x in per_image)
    return results
