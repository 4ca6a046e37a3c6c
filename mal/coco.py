"""COCO instance files: read, validate up front (one clear line per problem), and decode GT masks.

Validation happens before any work so a bad file fails in a second with the offending id, not an hour
into training with a stack trace from inside a data-loader worker.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from mal.errors import UserError
from mal.storage import image_dir, local_file

BOX_SLACK_PX = 1.0


@dataclass
class CocoSet:
    """A validated COCO instance file; `raw` is kept so outputs can reuse its images and categories."""

    raw: dict[str, Any]
    images: dict[int, dict]
    anns: list[dict]
    categories: dict[int, dict]
    image_root: Path | None
    source: str = ""

    def image_path(self, image_id: int) -> Path:
        if self.image_root is None:
            raise UserError(f"{self.source}: no image folder was given for these annotations")
        return self.image_root / self.images[image_id]["file_name"]


def load_coco(ann_path: str, img_dir: str | None = None, *, check_images: bool = False) -> CocoSet:
    """Read and validate `ann_path`; with `check_images`, also require every annotated image on disk."""
    path = local_file(ann_path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{ann_path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except UnicodeDecodeError:
        raise UserError(f"{ann_path}: not valid JSON (the file is not UTF-8 text)") from None
    _require_lists(raw, ann_path)
    images = _index_images(raw["images"], ann_path)
    categories = _index_categories(raw["categories"], ann_path)
    anns = _check_annotations(raw["annotations"], images, categories, ann_path)
    root = image_dir(img_dir) if img_dir else None
    coco = CocoSet(raw, images, anns, categories, root, ann_path)
    if check_images:
        _check_image_files(coco)
    return coco


def gt_mask(ann: dict, h: int, w: int) -> np.ndarray | None:
    """The (h, w) uint8 mask of a polygon / uncompressed-RLE / compressed-RLE segmentation; None if absent."""
    seg = ann.get("segmentation")
    if not seg:
        return None
    if isinstance(seg, list):
        if not all(isinstance(p, list) for p in seg):
            raise UserError(
                f"annotation {ann.get('id')}: polygon segmentation must be a list of coordinate lists"
            )
        # pycocotools reads a 4-number list as a box and rejects shorter ones: drop degenerate parts.
        polygons = [p for p in seg if len(p) >= 6]
        if not polygons:
            return np.zeros((h, w), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    else:
        raise UserError(f"annotation {ann.get('id')}: segmentation is neither polygons nor RLE")
    mask = mask_utils.decode(rle)
    if mask.shape != (h, w):
        raise UserError(
            f"annotation {ann.get('id')}: segmentation size {list(mask.shape)} does not match its image ({h}x{w})"
        )
    return mask.astype(np.uint8, copy=False)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _escapes_folder(file_name: str) -> bool:
    posix = PurePosixPath(file_name.replace("\\", "/"))
    return posix.is_absolute() or ".." in posix.parts or bool(PureWindowsPath(file_name).drive)


def _require_lists(raw: Any, name: str) -> None:
    if not isinstance(raw, dict):
        raise UserError(
            f"{name}: not a COCO instance file (top level is a {type(raw).__name__}, expected an object)"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(raw.get(key), list):
            raise UserError(f"{name}: not a COCO instance file: the '{key}' list is missing")


def _index_images(entries: list, name: str) -> dict[int, dict]:
    images: dict[int, dict] = {}
    for k, image in enumerate(entries):
        if not isinstance(image, dict) or not _is_int(image.get("id")):
            raise UserError(f"{name}: images[{k}] has no integer 'id'")
        iid = image["id"]
        if iid in images:
            raise UserError(f"{name}: duplicate image id {iid}")
        width, height = image.get("width"), image.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            raise UserError(
                f"{name}: image id {iid} needs positive integer width and height, got {width!r}x{height!r}"
            )
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise UserError(f"{name}: image id {iid} has no file_name")
        if _escapes_folder(file_name):
            raise UserError(
                f"{name}: image id {iid} file_name {file_name!r} escapes the image folder (absolute path or '..')"
            )
        images[iid] = image
    return images


def _index_categories(entries: list, name: str) -> dict[int, dict]:
    categories: dict[int, dict] = {}
    for k, cat in enumerate(entries):
        if not isinstance(cat, dict) or not _is_int(cat.get("id")):
            raise UserError(f"{name}: categories[{k}] has no integer 'id'")
        if cat["id"] in categories:
            raise UserError(f"{name}: duplicate category id {cat['id']}")
        categories[cat["id"]] = cat
    return categories


def _check_annotations(
    entries: list, images: dict[int, dict], categories: dict[int, dict], name: str
) -> list[dict]:
    seen: set[int] = set()
    for k, ann in enumerate(entries):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            raise UserError(f"{name}: annotations[{k}] has no integer 'id'")
        aid = ann["id"]
        if aid in seen:
            raise UserError(f"{name}: duplicate annotation id {aid}")
        seen.add(aid)
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        image = images.get(image_id) if _is_int(image_id) else None
        if image is None:
            raise UserError(f"{name}: annotation {aid} refers to unknown image_id {image_id!r}")
        if not (_is_int(category_id) and category_id in categories):
            raise UserError(f"{name}: annotation {aid} refers to unknown category_id {category_id!r}")
        _check_bbox(ann.get("bbox"), aid, image, name)
    return entries


def _check_bbox(bbox: Any, aid: int, image: dict, name: str) -> None:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_finite_number(v) for v in bbox)):
        raise UserError(f"{name}: annotation {aid} bbox {bbox!r} is not 4 finite numbers [x, y, w, h]")
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        raise UserError(f"{name}: annotation {aid} bbox {bbox} has width or height <= 0")
    width, height = image["width"], image["height"]
    if (
        x < -BOX_SLACK_PX
        or y < -BOX_SLACK_PX
        or x + w > width + BOX_SLACK_PX
        or y + h > height + BOX_SLACK_PX
    ):
        raise UserError(
            f"{name}: annotation {aid} bbox {bbox} lies outside image {image['id']} ({width}x{height}) "
            f"by more than {BOX_SLACK_PX:g} px"
        )


def _check_image_files(coco: CocoSet) -> None:
    """Only images that carry annotations are needed; the others may legitimately be absent."""
    used = sorted({ann["image_id"] for ann in coco.anns})
    missing = [iid for iid in used if not coco.image_path(iid).is_file()]
    if missing:
        raise UserError(
            f"{coco.source}: image file {coco.image_path(missing[0])} (image id {missing[0]}) not found; "
            f"{len(missing)} of {len(used)} annotated images are missing"
        )
