"""Box-fill, the floor a mask model must beat: the filled box taken as the mask."""

from __future__ import annotations

from mal.data.crops import box_mask
from mal.metrics import class_balanced_miou, mask_iou
from plumbing.coco import CocoSet, gt_mask


def box_fill_miou(coco: CocoSet) -> float:
    """Class-balanced mIoU of 'the filled box is the mask' over non-crowd masks: the floor a model must beat."""
    ious, categories = [], []
    for ann in coco.anns:
        if ann.get("iscrowd"):
            continue
        image = coco.images[ann["image_id"]]
        hw = (image["height"], image["width"])
        gt = gt_mask(ann, *hw)
        if gt is None:
            continue
        ious.append(mask_iou(box_mask(ann["bbox"], hw), gt))
        categories.append(ann["category_id"])
    return class_balanced_miou(ious, categories)
