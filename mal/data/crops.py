"""MAL's box-centred crops: the expanded crop box, wrap-around fill, the box mask and prompts in crop
coordinates, and the deterministic test crop with what paste-back needs.

Geometry follows the original MAL (`_expand_box`, wrap fill, non-aspect-preserving resize). One fix: the
box mask is drawn geometrically in crop coordinates, so wrapped-in content never carries box pixels.
Image crops are resized bilinearly (antialiased); the box mask samples the crop grid nearest-neighbour.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from mal.data.prompts import crop_prompt_maps

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Box = tuple[int, int, int, int]


def expand_box(box_xyxy: Sequence[float], margins: Sequence[float]) -> Box:
    """MAL's `_expand_box`: push each side away from the centre by (1 + margin), +1 on x1/y1, then floor/ceil."""
    x0, y0, x1, y1 = box_xyxy
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (
        math.floor(cx - (cx - x0) * (1 + margins[0])),
        math.floor(cy - (cy - y0) * (1 + margins[1])),
        math.ceil(cx + (x1 - cx) * (1 + margins[2]) + 1),
        math.ceil(cy + (y1 - cy) * (1 + margins[3]) + 1),
    )


def train_margins(rng: np.random.Generator, margin_rate: Sequence[float]) -> np.ndarray:
    """Random scale (m ~ U(margin_rate)) split randomly between opposite sides by gates: position jitter."""
    margins = rng.uniform(margin_rate[0], margin_rate[1], 4)
    g = rng.uniform(0.0, 1.0, 2)
    return margins * np.array([g[0], g[1], 1 - g[0], 1 - g[1]])


def eval_margins(test_margin_rate: Sequence[float]) -> np.ndarray:
    """The original's deterministic test crop: half the rate on every side (1.3x box at 0.6)."""
    return np.full(4, test_margin_rate[0] * 0.5)


def crop_wrap(image: np.ndarray, ext_box: Box) -> np.ndarray:
    """Crop `image` (H, W, ...) to ext_box; pixels outside the image come from its opposite side, as in MAL
    (synthetic padding colours would corrupt the CRF's colour affinities)."""
    x0, y0, x1, y1 = ext_box
    rows = np.arange(y0, y1)
    cols = np.arange(x0, x1)
    return image.take(rows, axis=0, mode="wrap").take(cols, axis=1, mode="wrap")


def box_pixels(bbox_xywh: Sequence[float], image_hw: Sequence[int]) -> Box:
    """Pixel range [x0, x1) x [y0, y1) that a (fractional) box touches (any overlap counts), clipped to the
    image; empty (x1 == x0 or y1 == y0) for a box outside it."""
    x, y, w, h = bbox_xywh
    height, width = image_hw
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    return x0, y0, max(x0, min(width, math.ceil(x + w))), max(y0, min(height, math.ceil(y + h)))


def box_mask(bbox_xywh: Sequence[float], image_hw: Sequence[int]) -> np.ndarray:
    """Full-image uint8 mask of the filled box."""
    x0, y0, x1, y1 = box_pixels(bbox_xywh, image_hw)
    mask = np.zeros(tuple(image_hw), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def crop_box_mask(bbox_xywh: Sequence[float], ext_box: Box, image_hw: Sequence[int], size: int) -> np.ndarray:
    """(size, size) float32 box mask of the resized crop: 1 where a pixel samples an image pixel of the box."""
    bx0, by0, bx1, by1 = box_pixels(bbox_xywh, image_hw)
    x0, y0, x1, y1 = ext_box
    centres = np.arange(size) + 0.5
    cols = x0 + np.floor(centres * (x1 - x0) / size).astype(np.int64)
    rows = y0 + np.floor(centres * (y1 - y0) / size).astype(np.int64)
    inside_cols = (cols >= bx0) & (cols < bx1)
    inside_rows = (rows >= by0) & (rows < by1)
    return np.outer(inside_rows, inside_cols).astype(np.float32)


def normalize(image: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) -> float32 scaled to [0, 1] and ImageNet-normalised."""
    return F.normalize(F.to_dtype(image, torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)


def box_crop(
    image: np.ndarray, bbox: Sequence[float], margins: np.ndarray, crop_size: int
) -> tuple[torch.Tensor, torch.Tensor, Box]:
    """uint8 (3, S, S) image crop, float32 (1, S, S) box mask and the integer crop box."""
    x, y, w, h = bbox
    ext_box = expand_box((x, y, x + w, y + h), margins)
    pixels = torch.from_numpy(np.ascontiguousarray(crop_wrap(image, ext_box))).permute(2, 0, 1)
    crop = F.resize(pixels, [crop_size, crop_size], interpolation=F.InterpolationMode.BILINEAR, antialias=True)
    mask = crop_box_mask(bbox, ext_box, image.shape[:2], crop_size)
    return crop, torch.from_numpy(mask)[None], ext_box


def crop_prompts(ann: dict, ext_box: Box, crop_size: int) -> torch.Tensor:
    """uint8 (2, S, S) object / background label maps of the annotation's points and scribbles on its crop."""
    return torch.from_numpy(crop_prompt_maps(ann, ext_box, crop_size))


def eval_item(image: np.ndarray, ann: dict, margins: np.ndarray, crop_size: int) -> dict[str, torch.Tensor]:
    """One box's deterministic test crop plus what paste-back and metrics need (crop box, ids, image size)."""
    crop, boxmask, ext_box = box_crop(image, ann["bbox"], margins, crop_size)
    return {
        "image": normalize(crop),
        "boxmask": boxmask,
        "prompts": crop_prompts(ann, ext_box, crop_size),
        "box_area": torch.tensor(ann["bbox"][2] * ann["bbox"][3], dtype=torch.float32),
        "ext_box": torch.tensor(ext_box, dtype=torch.float32),
        "bbox": torch.tensor(ann["bbox"], dtype=torch.float32),
        "ann_id": torch.tensor(ann["id"], dtype=torch.int64),
        "image_id": torch.tensor(ann["image_id"], dtype=torch.int64),
        "category_id": torch.tensor(ann["category_id"], dtype=torch.int64),
        "image_hw": torch.tensor(image.shape[:2], dtype=torch.int64),
    }
