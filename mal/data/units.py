"""Labeling work as units: the input's boxes grouped by image into network batches, plain data that any
inference engine (this process, Ray actors) turns into the same crops."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from mal.data.crops import eval_item
from mal.data.datasets import collate
from mal.data.images import load_image
from plumbing.coco import CocoSet

LABEL_KEYS = ("id", "image_id", "category_id", "bbox", "iscrowd", "points", "scribbles")


def label_units(coco: CocoSet, max_boxes: int, with_masks: bool = False) -> list[list[dict]]:
    """The input's boxes as units of at most `max_boxes` (one network batch): whole images in order of their
    first box, packed greedily; an image with more boxes is split over units of its own.

    A unit is plain JSON-able data (image path and size, its boxes; no pixels). Every inference engine feeds
    the network one unit at a time, and a batch's output depends on its members (size buckets, kernels), so
    engines that share the units write the same masks.
    """
    boxes_of: dict[int, list[dict]] = {}
    keys = (*LABEL_KEYS, "segmentation") if with_masks else LABEL_KEYS
    for ann in coco.anns:
        boxes_of.setdefault(ann["image_id"], []).append({k: ann[k] for k in keys if k in ann})
    units: list[list[dict]] = []
    unit: list[dict] = []
    filled = 0
    for image_id, boxes in boxes_of.items():
        info = coco.images[image_id]
        for start in range(0, len(boxes), max_boxes):
            part = boxes[start : start + max_boxes]
            if unit and filled + len(part) > max_boxes:
                units.append(unit)
                unit, filled = [], 0
            record = {"image_id": image_id, "path": str(coco.image_path(image_id)), "hw": [info["height"], info["width"]]}
            unit.append({**record, "boxes": part})
            filled += len(part)
    if unit:
        units.append(unit)
    return units


def unit_crops(unit: list[dict], margins: np.ndarray, crop_size: int) -> dict[str, torch.Tensor]:
    """The batched test crops of a unit's boxes, in unit order; each image is decoded once."""
    items = []
    for record in unit:
        image = load_image(record["path"], record["image_id"], tuple(record["hw"]))
        items += [eval_item(image, box, margins, crop_size) for box in record["boxes"]]
    return collate(items)


class UnitCrops(Dataset):
    """Units as a map-style dataset, so data-loader workers decode and crop ahead of the network."""

    def __init__(self, units: list[list[dict]], margins: np.ndarray, crop_size: int) -> None:
        self.units = units
        self.margins = margins
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return unit_crops(self.units[index], self.margins, self.crop_size)
