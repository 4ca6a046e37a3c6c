"""An annotation's points and scribbles drawn as label maps on a pixel grid: the resized crop (training and
test crops) or the box region of the image (the output mask).

A grid is an affine view of the image: grid pixel (r, c) covers image x in [x0 + c / sx, x0 + (c + 1) / sx),
the mapping `crop_box_mask` samples the crop with. Channel 0 marks object pixels (object points, scribbles),
channel 1 background points. Prompts outside the grid are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from plumbing.coco_prompts import OBJECT, has_prompts

_SHIFT = 4  # cv2 draws polylines with 1/16-pixel vertex precision


def prompt_maps(ann: dict, origin: Sequence[float], scale: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """(2, h, w) uint8 label maps of `ann`'s prompts on the grid at `origin` (image x0, y0) with `scale`
    (grid pixels per image pixel in x, y)."""
    maps = np.zeros((2, *shape), np.uint8)
    if not has_prompts(ann) or not all(shape):
        return maps
    (x0, y0), (sx, sy) = origin, scale
    h, w = shape
    for x, y, label in ann.get("points") or []:
        col, row = _cell((x - x0) * sx, w), _cell((y - y0) * sy, h)
        if col is not None and row is not None:
            maps[0 if label == OBJECT else 1, row, col] = 1
    for line in ann.get("scribbles") or []:
        xy = np.asarray(line, np.float64).reshape(-1, 2)
        # vertex coordinates on the grid, in the pixel-centre convention cv2 draws with
        grid = np.stack([(xy[:, 0] - x0) * sx - 0.5, (xy[:, 1] - y0) * sy - 0.5], 1)
        if len(grid) == 1:
            col, row = _cell(grid[0, 0] + 0.5, w), _cell(grid[0, 1] + 0.5, h)
            if col is not None and row is not None:
                maps[0, row, col] = 1
            continue
        # far-away vertices are clamped first: cv2 takes 32-bit fixed point, and clipping keeps the visible part
        grid = np.clip(grid, -4.0 * max(h, w), 5.0 * max(h, w))
        points = np.round(grid * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)
        canvas = np.ascontiguousarray(maps[0])
        cv2.polylines(canvas, [points], isClosed=False, color=1, thickness=1, lineType=cv2.LINE_8, shift=_SHIFT)
        maps[0] = canvas
    return maps


def crop_prompt_maps(ann: dict, ext_box: Sequence[int], size: int) -> np.ndarray:
    """The prompts on the (size, size) crop of `ext_box`, resized as the image crop is."""
    x0, y0, x1, y1 = ext_box
    return prompt_maps(ann, (x0, y0), (size / (x1 - x0), size / (y1 - y0)), (size, size))


def region_prompt_maps(ann: dict, region: Sequence[int]) -> np.ndarray:
    """The prompts on the image pixels of `region` (y0, y1, x0, x1), the box region an output mask holds."""
    y0, y1, x0, x1 = region
    return prompt_maps(ann, (x0, y0), (1.0, 1.0), (y1 - y0, x1 - x0))


def _cell(coordinate: float, side: int) -> int | None:
    """The grid cell holding a coordinate; one on the grid's far edge belongs to the last cell."""
    if not 0 <= coordinate <= side:
        return None
    return min(int(np.floor(coordinate)), side - 1)
