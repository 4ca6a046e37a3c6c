"""COCO instance files: read, validate up front (one clear line per problem), and decode GT masks.

Validation happens before any work so a bad file fails in a second with the offending id, not an hour
into training with a stack trace from inside a data-loader worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from plumbing import coco_prompts as prompts
from plumbing import coco_values as values
from plumbing.errors import UserError
from plumbing.safe_json import parse_json
from plumbing.storage import image_dir, local_file
from plumbing.wording import printable

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
    derived_boxes: frozenset[int] = frozenset()  # ids whose bbox came from their prompts (not a tight box)

    def image_path(self, image_id: int) -> Path:
        if self.image_root is None:
            raise UserError(f"{self.source}: no image folder was given for these annotations")
        return self.image_root / self.images[image_id]["file_name"]


def load_coco(ann_path: str, img_dir: str | None = None, *, check_images: bool = False) -> CocoSet:
    """Read and validate `ann_path`; with `check_images`, also require every annotated image on disk."""
    path = local_file(ann_path)
    try:
        raw = parse_json(path.read_text(encoding="utf-8"), ann_path)
    except UnicodeDecodeError:
        raise UserError(f"{ann_path}: not valid JSON (the file is not UTF-8 text)") from None
    _require_lists(raw, ann_path)
    images = _index_images(raw["images"], ann_path)
    categories = _by_id(raw["categories"], "categories", "category", ann_path)
    anns, derived = _check_annotations(raw["annotations"], images, categories, ann_path)
    root = image_dir(img_dir) if img_dir else None
    coco = CocoSet(raw, images, anns, categories, root, ann_path, derived)
    if check_images:
        _check_image_files(coco)
    return coco


def gt_mask(ann: dict, h: int, w: int) -> np.ndarray | None:
    """The (h, w) uint8 mask of a polygon / uncompressed-RLE / compressed-RLE segmentation; None if absent."""
    seg = ann.get("segmentation")
    if not seg:
        return None
    problem = _segmentation_problem(seg, h, w)
    if problem:
        raise UserError(f"annotation {ann.get('id')}: {problem}")
    if isinstance(seg, list):
        polygons = values.usable_polygons(seg)
        if not polygons:
            return np.zeros((h, w), np.uint8)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
    else:
        rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
    mask = mask_utils.decode(rle)
    if mask.shape != (h, w):
        raise UserError(
            f"annotation {ann.get('id')}: segmentation size {list(mask.shape)} does not match its image ({h}x{w})"
        )
    return mask.astype(np.uint8, copy=False)


_is_int, _is_finite_number = values.is_int, values.is_finite_number


def annotation_area(ann: dict, h: int, w: int) -> float:
    """`area` as written, else the mask's area (pycocotools' COCOeval needs one for its size ranges), else
    the box's when there is no mask."""
    if "area" in ann:
        return float(ann["area"])
    mask = gt_mask(ann, h, w)
    return float(mask.sum()) if mask is not None else float(ann["bbox"][2] * ann["bbox"][3])


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


def _by_id(entries: list, key: str, what: str, name: str) -> dict[int, dict]:
    """`raw[key]`'s entries by their integer id; a missing or repeated id is one line naming it."""
    found: dict[int, dict] = {}
    for k, entry in enumerate(entries):
        problem = values.id_problem(entry.get("id")) if isinstance(entry, dict) else "is not an object"
        if problem:
            raise UserError(f"{name}: {key}[{k}] {problem}")
        if entry["id"] in found:
            raise UserError(f"{name}: duplicate {what} id {entry['id']}")
        found[entry["id"]] = entry
    return found


def _index_images(entries: list, name: str) -> dict[int, dict]:
    images = _by_id(entries, "images", "image", name)
    for iid, image in images.items():
        problem = values.side_problem(image.get("width"), image.get("height"))
        if problem:
            raise UserError(f"{name}: image id {iid} {problem}")
        file_name = image.get("file_name")
        if not isinstance(file_name, str) or not file_name or not file_name.isprintable():
            raise UserError(printable(f"{name}: image id {iid} has no usable file_name (got {file_name!r})"))
        if _escapes_folder(file_name):
            raise UserError(
                f"{name}: image id {iid} file_name {file_name!r} escapes the image folder (absolute path or '..')"
            )
    return images


def _check_annotations(
    entries: list, images: dict[int, dict], categories: dict[int, dict], name: str
) -> tuple[list[dict], frozenset[int]]:
    """The annotations, each checked, and the ids of those without a bbox that got the box their prompts imply."""
    derived = set()
    for aid, ann in _by_id(entries, "annotations", "annotation", name).items():
        image_id, category_id = ann.get("image_id"), ann.get("category_id")
        image = images.get(image_id) if _is_int(image_id) else None
        if image is None:
            raise UserError(f"{name}: annotation {aid} refers to unknown image_id {image_id!r}")
        if not (_is_int(category_id) and category_id in categories):
            raise UserError(f"{name}: annotation {aid} refers to unknown category_id {category_id!r}")
        h, w = image["height"], image["width"]
        problem = prompts.prompts_problem(ann, w, h)
        if problem:
            raise UserError(f"{name}: annotation {aid}: {problem}")
        if ann.get("bbox") is None and prompts.has_prompts(ann):
            ann["bbox"] = prompts.derived_bbox(ann, w, h)
            if ann["bbox"] is None:
                raise UserError(f"{name}: annotation {aid} has no bbox, and no object point or scribble to derive one from")
            derived.add(aid)
        _check_bbox(ann.get("bbox"), aid, image, name)
        problem = (
            prompts.outside_box_problem(ann, ann["bbox"]) or values.iscrowd_problem(ann) or values.area_problem(ann)
            or _segmentation_problem(ann.get("segmentation"), h, w)
        )
        if problem:
            raise UserError(f"{name}: annotation {aid}: {problem}")
    return entries, frozenset(derived)


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
    for iid in used:
        problem = _image_problem(coco.image_path(iid), coco.images[iid])
        if problem:
            raise UserError(f"{coco.source}: image file {coco.image_path(iid)} (image id {iid}) {problem}")


# The marker that closes a complete file, looked for near its end: a copy or download cut short lacks it.
_END_MARKERS = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}
_TAIL_BYTES = 1024


def _image_problem(path: Path, info: dict) -> str | None:
    """Reads the header and the last kilobyte (about 0.1 ms a file): a format PIL knows, the size the json
    states, and a complete file. Pixels are decoded when a box is used; decoding every image up front would
    cost minutes on COCO."""
    try:
        with Image.open(path) as image:
            (width, height), kind = image.size, image.format
        with open(path, "rb") as file:
            head = file.read(6)
            size = file.seek(0, 2)
            file.seek(max(0, size - _TAIL_BYTES))
            tail = file.read()
    except Image.UnidentifiedImageError:
        return "is not an image in a known format (empty, corrupt or not an image)"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        reason = getattr(exc, "strerror", None) or " ".join(str(exc).split())
        return f"cannot be read as an image ({reason})"
    if (width, height) != (info["width"], info["height"]):
        return f"is {width}x{height} but the json says {info['width']}x{info['height']}"
    if _END_MARKERS.get(kind, b"") not in tail:
        return f"is cut short (a {kind} file without its end marker)"
    declared = int.from_bytes(head[2:6], "little") if kind == "BMP" else 0  # a BMP header states its file size
    if size < declared:
        return f"is cut short (a BMP file of {size} bytes whose header says {declared})"
    return None


def _segmentation_problem(seg: Any, h: int, w: int) -> str | None:
    """What is malformed in a polygon / RLE segmentation (checked without rasterising), or None.

    pycocotools decodes a bad RLE without complaint into garbage pixels, so the counts are checked here.
    """
    if seg is None or seg == []:
        return None
    if isinstance(seg, list):
        return values.polygons_problem(seg, h, w)
    if not (isinstance(seg, dict) and "counts" in seg and "size" in seg):
        return "segmentation is neither polygons nor RLE ({counts, size})"
    problem = values.rle_size_problem(seg["size"], h, w)
    if problem:
        return problem
    counts = seg["counts"]
    if isinstance(counts, str):
        counts = _rle_string_counts(counts)
    elif not (isinstance(counts, list) and all(_is_int(c) for c in counts)):
        counts = None
    if counts is None or any(c < 0 for c in counts) or sum(counts) != h * w:
        return f"RLE counts do not describe a {h}x{w} mask"
    return None


def _rle_string_counts(text: str) -> list[int] | None:
    """The run lengths of a compressed COCO RLE string (pycocotools' rleFrString), None if it is cut short.

    Each count is 5-bit groups (char - 48) with a continuation bit 0x20 and a sign bit 0x10; from the
    third count on, each is stored as the difference to the count two places before it.
    """
    counts: list[int] = []
    p = 0
    while p < len(text):
        value, shift, more = 0, 0, True
        while more:
            if p == len(text):
                return None
            c = ord(text[p]) - 48
            value |= (c & 0x1F) << shift
            more = bool(c & 0x20)
            p, shift = p + 1, shift + 5
            if not more and c & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts
