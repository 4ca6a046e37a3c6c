"""Point and scribble prompts on a COCO annotation: their validation and the box they imply when none is given.

`points: [[x, y, label], ...]` (label 1: object, 0: background) and `scribbles: [[x1, y1, x2, y2, ...], ...]`
(polylines drawn on the object), in the image's pixel coordinates as COCO writes boxes and polygons.
Each check returns what is wrong as a phrase quoting the value, or None, like plumbing.coco_values.
"""

from __future__ import annotations

from typing import Any

from plumbing.coco_values import is_finite_number, is_int
from plumbing.wording import Shown

OBJECT, BACKGROUND = 1, 0
PROMPT_KEYS = ("points", "scribbles")
# A box derived from prompts is their extent grown on every side by this fraction of its longer side (at least
# PROMPT_BOX_MIN_PX): one stroke along an object says little about its width. Chosen with bench/prompts.py's
# simulated scribbles on coco128-seg train (README, "Points and scribbles").
PROMPT_BOX_MARGIN = 0.15
PROMPT_BOX_MIN_PX = 2.0
# prompts may touch the box's edge by as much as a box may stray outside its image (plumbing.coco.BOX_SLACK_PX)
EDGE_SLACK_PX = 1.0


def has_prompts(ann: dict) -> bool:
    return any(ann.get(key) for key in PROMPT_KEYS)


def prompts_problem(ann: dict, width: int, height: int) -> str | None:
    """What is malformed in an annotation's points and scribbles, or None; the bbox is checked apart."""
    return _points_problem(ann.get("points"), width, height) or _scribbles_problem(ann.get("scribbles"), width, height)


def outside_box_problem(ann: dict, bbox: list[float]) -> str | None:
    """An object prompt outside the given box: the mask is drawn inside the box only, so it could never be kept."""
    x, y, w, h = bbox
    for where, (px, py) in _object_vertices(ann):
        if not (x - EDGE_SLACK_PX <= px <= x + w + EDGE_SLACK_PX and y - EDGE_SLACK_PX <= py <= y + h + EDGE_SLACK_PX):
            return f"{where} ({px:g}, {py:g}) is on the object but outside its bbox {bbox}; enlarge the box or move the prompt"
    return None


def derived_bbox(ann: dict, width: int, height: int, margin: float = PROMPT_BOX_MARGIN) -> list[float] | None:
    """[x, y, w, h]: the extent of the object points and scribbles, grown by `margin` of its longer side (at
    least PROMPT_BOX_MIN_PX) and clipped to the image; None without an object prompt (background points say
    where the object is not)."""
    vertices = [v for _, v in _object_vertices(ann)]
    if not vertices:
        return None
    xs, ys = [v[0] for v in vertices], [v[1] for v in vertices]
    pad = max(margin * max(max(xs) - min(xs), max(ys) - min(ys)), PROMPT_BOX_MIN_PX)
    x0, x1 = max(0.0, min(xs) - pad), min(float(width), max(xs) + pad)
    y0, y1 = max(0.0, min(ys) - pad), min(float(height), max(ys) + pad)
    return [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)]


def _object_vertices(ann: dict) -> list[tuple[str, tuple[float, float]]]:
    """Every object point and scribble vertex, named as a message would name it."""
    found = [(f"points[{k}]", (p[0], p[1])) for k, p in enumerate(ann.get("points") or []) if p[2] == OBJECT]
    for k, line in enumerate(ann.get("scribbles") or []):
        found += [(f"scribbles[{k}] point", (line[i], line[i + 1])) for i in range(0, len(line), 2)]
    return found


def _inside(x: float, y: float, width: int, height: int) -> bool:
    return 0 <= x <= width and 0 <= y <= height


def _points_problem(points: Any, width: int, height: int) -> str | None:
    if points is None:
        return None
    if not isinstance(points, list):
        return f"points must be a list of [x, y, label] (got {Shown(points)!r})"
    for k, point in enumerate(points):
        if not (isinstance(point, list) and len(point) == 3 and all(is_finite_number(v) for v in point[:2])):
            return f"points[{k}] {Shown(point)!r} is not [x, y, label] with finite x and y"
        x, y, label = point
        if not (is_int(label) and label in (OBJECT, BACKGROUND)):
            return f"points[{k}] label {Shown(label)!r} is not {OBJECT} (object) or {BACKGROUND} (background)"
        if not _inside(x, y, width, height):
            return f"points[{k}] ({x:g}, {y:g}) lies outside its image ({width}x{height})"
    return None


def _scribbles_problem(scribbles: Any, width: int, height: int) -> str | None:
    if scribbles is None:
        return None
    if not isinstance(scribbles, list):
        return f"scribbles must be a list of polylines [x1, y1, x2, y2, ...] (got {Shown(scribbles)!r})"
    for k, line in enumerate(scribbles):
        if not (isinstance(line, list) and all(is_finite_number(v) for v in line)):
            return f"scribbles[{k}] is not a polyline of finite x, y numbers (got {Shown(line)!r})"
        if not line or len(line) % 2:
            return f"scribbles[{k}] has {len(line)} numbers; a scribble is one or more x, y pairs"
        outside = next(((line[i], line[i + 1]) for i in range(0, len(line), 2) if not _inside(line[i], line[i + 1], width, height)), None)
        if outside:
            return f"scribbles[{k}] point ({outside[0]:g}, {outside[1]:g}) lies outside its image ({width}x{height})"
    return None
