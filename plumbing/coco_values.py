"""The value classes of a COCO file that pycocotools and numpy cannot take: ids beyond 64 bits, flags that
are not 0/1, areas that are not numbers, degenerate polygons and coordinates so large that rasterising them
would never end. Each check returns what is wrong as a phrase quoting the value, or None."""

from __future__ import annotations

import math
from typing import Any

from plumbing.wording import Shown

INT64 = (-(2**63), 2**63 - 1)  # pycocotools and numpy index ids as int64
MAX_SIDE = 2**31 - 1  # image sides pycocotools' RLE code can hold
# polygon points may stray outside their image (annotation tools clip loosely), but not by more than the
# image's own size: pycocotools walks every edge pixel by pixel, so a point at 1e30 would never finish
POLYGON_REACH = 1.0


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def id_problem(value: Any) -> str | None:
    if not is_int(value):
        return f"has no integer 'id' (got {Shown(value)!r})"
    if not INT64[0] <= value <= INT64[1]:
        return f"id {Shown(value)!r} does not fit in 64 bits"
    return None


def side_problem(width: Any, height: Any) -> str | None:
    if all(is_int(v) and 0 < v <= MAX_SIDE for v in (width, height)):
        return None
    return f"needs positive integer width and height, got {Shown(width)!r}x{Shown(height)!r} (at most {MAX_SIDE})"


def iscrowd_problem(ann: dict) -> str | None:
    """`iscrowd` may be absent (not a crowd); when present it is 0 or 1 (false/true as JSON writes them)."""
    if "iscrowd" not in ann or ann["iscrowd"] in (0, 1):
        return None
    return f"iscrowd {Shown(ann['iscrowd'])!r} is not 0 or 1"


def area_problem(ann: dict) -> str | None:
    """`area` is optional (it is computed from the mask when missing); when present a number >= 0."""
    if "area" not in ann or (is_finite_number(ann["area"]) and ann["area"] >= 0):
        return None
    return f"area {Shown(ann['area'])!r} is not a finite number >= 0"


def polygons_problem(polygons: list, height: int, width: int) -> str | None:
    """Polygon parts as COCO writes them: [x1, y1, x2, y2, ...] near their image. A part of fewer than 3 points
    has no area and is left out where masks are drawn (`usable_polygons`)."""
    for k, part in enumerate(polygons):
        if not (isinstance(part, list) and all(is_finite_number(v) for v in part)):
            return f"polygon segmentation must be lists of finite x, y numbers (polygon {k} is {Shown(part)!r})"
        if len(part) % 2:
            return f"polygon {k} has {len(part)} numbers; a polygon is x, y pairs"
        far = next((v for i, v in enumerate(part) if _far_outside(v, width if i % 2 == 0 else height)), None)
        if far is not None:
            return f"polygon {k} has a coordinate {Shown(far)!r} far outside its image ({width}x{height})"
    return None


def usable_polygons(polygons: list) -> list:
    """The parts that enclose an area; pycocotools reads a 4-number part as a box and refuses shorter ones."""
    return [part for part in polygons if len(part) >= 6]


def _far_outside(coordinate: float, side: int) -> bool:
    return not -side * POLYGON_REACH <= coordinate <= side * (1 + POLYGON_REACH)


def rle_size_problem(size: Any, height: int, width: int) -> str | None:
    if isinstance(size, list) and len(size) == 2 and all(is_int(v) for v in size) and size == [height, width]:
        return None
    return f"segmentation size {Shown(size)!r} does not match its image ({height}x{width})"
