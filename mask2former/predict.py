"""From Mask2Former's query outputs to instances in the original image: the top-k (query, class) pairs, each
mask cut to the image's real pixels (not the batch padding), resized back, binarised at 0.5 and scored as
Mask2Former scores instances (class probability x mean mask probability inside the mask)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

MASK_THRESHOLD = 0.5


def image_instances(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, padded_hw: tuple[int, int], size: tuple[int, int],
    original_size: tuple[int, int], top_k: int, valid_classes: torch.Tensor,
) -> list[dict[str, Any]]:
    """One image's instances as {label, score, rle}: `class_logits` (queries, classes + 1), `mask_logits`
    (queries, h/4, w/4) at the padded batch size; `valid_classes` masks out class indices with no category."""
    probs = class_logits.float().softmax(-1)[:, :-1]  # the last class is "no object"
    probs = probs * valid_classes.to(probs)
    queries, classes = probs.shape
    scores, flat = probs.flatten().topk(min(top_k, queries * classes))
    query, label = flat // classes, flat % classes
    masks = F.interpolate(mask_logits[query][None].float(), size=padded_hw, mode="bilinear", align_corners=False)[0]
    masks = masks[:, : size[0], : size[1]]
    masks = F.interpolate(masks[None], size=original_size, mode="bilinear", align_corners=False)[0].sigmoid()
    binary = masks > MASK_THRESHOLD
    area = binary.flatten(1).sum(1)
    mask_score = (masks * binary).flatten(1).sum(1) / area.clamp(min=1)
    scores = scores * mask_score
    found = []
    for k in torch.nonzero(area > 0).flatten().tolist():
        rle = mask_utils.encode(np.asfortranarray(binary[k].cpu().numpy().astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        found.append({"label": int(label[k]), "score": float(scores[k]), "rle": rle, "area": int(area[k])})
    return found


def batch_instances(outputs: Any, batch: dict[str, Any], top_k: int, valid_classes: torch.Tensor) -> list[list[dict[str, Any]]]:
    """`image_instances` for every image of a batch."""
    padded = tuple(batch["pixel_values"].shape[-2:])
    return [
        image_instances(outputs.class_queries_logits[k], outputs.masks_queries_logits[k], padded, batch["size"][k],
                        batch["original_size"][k], top_k, valid_classes)
        for k in range(len(batch["image_id"]))
    ]  # fmt: skip
