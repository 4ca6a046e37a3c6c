"""From network logits to per-box masks in image coordinates (the paste-back shared by validation,
`mal evaluate` and `mal inference`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from mal.data.crops import box_pixels
from mal.metrics import BUCKETS, area_bucket


@dataclass
class InstanceMask:
    """One box's mask. Only the box region is stored: outside the box the mask is zero by construction."""

    ann_id: int
    image_id: int
    category_id: int
    bbox: list[float]  # xywh, as given
    image_hw: tuple[int, int]
    region: tuple[int, int, int, int]  # y0, y1, x0, x1 of the box in image pixels, clipped to the image
    mask: np.ndarray  # bool, shape (y1-y0, x1-x0)
    score: float  # mean foreground probability: the confidence COCOeval ranks by

    @property
    def box_area(self) -> float:
        return float(self.bbox[2] * self.bbox[3])

    @property
    def empty(self) -> bool:
        return not self.mask.any()

    def full_mask(self) -> np.ndarray:
        h, w = self.image_hw
        canvas = np.zeros((h, w), dtype=np.uint8)
        y0, y1, x0, x1 = self.region
        canvas[y0:y1, x0:x1] = self.mask
        return canvas

    def rle(self) -> dict:
        rle = mask_utils.encode(np.asfortranarray(self.full_mask()))
        rle["counts"] = rle["counts"].decode("ascii")
        return rle


def thresholds_by_bucket(mask_thres: list[float]) -> dict[str, float]:
    values = mask_thres * 3 if len(mask_thres) == 1 else mask_thres
    return dict(zip(BUCKETS, values, strict=True))


def paste_masks(logits: torch.Tensor, batch: dict[str, torch.Tensor], thresholds: dict[str, float]) -> list[InstanceMask]:
    """Upsample each crop's logits to its expanded box in image pixels, keep the box region, binarise.

    Resizing straight to the expanded-box size (instead of crop size, then again to the box) is the same
    mapping with one interpolation less.
    """
    out = []
    logits = logits.float()
    for i in range(logits.shape[0]):
        ex0, ey0, ex1, ey1 = (int(v) for v in batch["ext_box"][i].tolist())
        bbox = [float(v) for v in batch["bbox"][i].tolist()]
        image_hw = tuple(int(v) for v in batch["image_hw"][i].tolist())
        x0, y0, x1, y1 = box_pixels(bbox, image_hw)
        if y1 > y0 and x1 > x0:
            up = F.interpolate(logits[i : i + 1], size=(ey1 - ey0, ex1 - ex0), mode="bilinear", align_corners=False)
            prob = torch.sigmoid(up[0, 0, y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0])
            mask = (prob > thresholds[area_bucket(bbox[2] * bbox[3])]).cpu().numpy()
            score = float(prob[torch.from_numpy(mask).to(prob.device)].mean()) if mask.any() else float(prob.mean())
        else:
            mask, score = np.zeros((y1 - y0, x1 - x0), dtype=bool), 0.0
        out.append(
            InstanceMask(
                ann_id=int(batch["ann_id"][i]),
                image_id=int(batch["image_id"][i]),
                category_id=int(batch["category_id"][i]),
                bbox=bbox,
                image_hw=image_hw,  # type: ignore[arg-type]
                region=(y0, y1, x0, x1),
                mask=mask,
                score=score,
            )
        )
    return out
