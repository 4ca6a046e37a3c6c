"""The CPU-sized demo set: non-rectangular objects on cluttered backgrounds, some partly hidden by others.

Shapes are chosen so the filled box is a poor mask (rings, stars, rotated ellipses, blobs). The images have
the statistics that box supervision relies on in real photos: objects ("things") are vivid and backgrounds
("stuff": stripes, checks, smooth noise, unannotated clutter) are muted, so a model learns from the pixels
outside every box what background looks like; neighbouring pixels of one surface are alike, so MAL's
colour-affinity CRF sees the edges. Objects overlap only a little, because a box cannot say which of two
heavily overlapping objects it means.
Everything comes from numpy Generators seeded per image: a seed gives byte-identical images and json.
"""

from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from mal.data import box_fill_miou
from mal.errors import UserError
from plumbing.coco import load_coco

CATEGORIES = ("ellipse", "blob", "star", "ring")
# Radii relative to a 160 px image; bands chosen so boxes fall in COCO's small / medium / large buckets.
RADIUS_BANDS = {"small": (7.0, 14.0), "medium": (25.0, 44.0), "large": (52.0, 70.0)}
BAND_P = {"small": 0.2, "medium": 0.55, "large": 0.25}
OBJECTS_PER_IMAGE = (3, 6)
MIN_VISIBLE_FRACTION = 0.4  # a mostly hidden object is no fair box to label
MAX_OVERLAP = 0.2
PLACEMENT_TRIES = 20
MIN_VISIBLE_PX = 16
MIN_COLOUR_DISTANCE = 90.0
SENSOR_NOISE = 2.0
# HSV saturation and value ranges. Backgrounds are muted "stuff" and objects vivid "things": the appearance
# statistics that let a box-supervised model learn, from pixels outside every box, what background looks like.
STUFF = ((0.0, 0.3), (0.25, 0.85))
THINGS = ((0.55, 1.0), (0.55, 1.0))


def write_demo_dataset(
    out_dir: str | Path, seed: int = 0, num_train: int = 60, num_val: int = 20, image_size: int = 160
) -> dict:
    """Write OUT/{train,val}/images/*.png and OUT/{train,val}/annotations.json; return counts and the
    box-filled-as-mask baseline mIoU on val."""
    out = Path(out_dir)
    _refuse_a_dataset_in(out)
    counts = {}
    for split_id, (split, n_images) in enumerate((("train", num_train), ("val", num_val))):
        counts[f"{split}_images"] = n_images
        counts[f"{split}_instances"] = _write_split(out / split, seed, split_id, n_images, image_size)
    val = load_coco(str(out / "val" / "annotations.json"))
    counts["box_fill_miou_val"] = box_fill_miou(val)
    return counts


def _refuse_a_dataset_in(out: Path) -> None:
    """A folder that already holds a dataset (this one or another) is never written over; an empty or
    unrelated folder is fine."""
    from plumbing.outputs import check_folder

    check_folder("demo-data OUT", out)
    taken = [out / split / part for split in ("train", "val") for part in ("annotations.json", "images")]
    found = next((path for path in taken if path.exists()), None)
    if found is not None:
        raise UserError(f"{out} already holds a dataset ({found} exists); choose an empty folder or delete it")


def _write_split(folder: Path, seed: int, split_id: int, n_images: int, size: int) -> int:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, n_images + 1):
        rng = np.random.default_rng((seed, split_id, image_id))
        pixels, objects = _render_image(rng, size)
        file_name = f"{image_id:04d}.png"
        Image.fromarray(pixels).save(folder / "images" / file_name, format="PNG")
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for category_id, mask in objects:
            annotations.append(_annotation(len(annotations) + 1, image_id, category_id, mask))
    coco = {
        "info": {"description": "automl-mal synthetic demo set", "version": "1"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": k + 1, "name": name, "supercategory": "shape"} for k, name in enumerate(CATEGORIES)
        ],
    }
    (folder / "annotations.json").write_text(json.dumps(coco), encoding="utf-8")
    return len(annotations)


def _annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict:
    ys, xs = np.nonzero(mask)
    x0, y0 = int(xs.min()), int(ys.min())
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0],
        "area": int(mask.sum()),
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "iscrowd": 0,
    }


def _render_image(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Background, then objects largest first (smaller ones occlude them); returns the visible masks."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background_colours = [_colour(rng, [], STUFF) for _ in range(2)]
    canvas = _background(rng, yy, xx, background_colours)
    scale = size / 160.0
    bands = rng.choice(
        list(BAND_P), size=rng.integers(*OBJECTS_PER_IMAGE, endpoint=True), p=list(BAND_P.values())
    )
    radii = sorted((rng.uniform(*RADIUS_BANDS[b]) * scale for b in bands), reverse=True)
    owner = np.full((size, size), -1)
    drawn = []
    for radius in radii:
        category = int(rng.integers(len(CATEGORIES)))
        shape = _place(rng, CATEGORIES[category], radius, owner, yy, xx)
        if shape is None:
            continue
        k = len(drawn)
        colour = _colour(rng, [c for _, _, c in drawn], THINGS)
        canvas[shape] = _texture(rng, yy, xx, colour)[shape]
        owner[shape] = k
        drawn.append((category + 1, shape, colour))
    objects = []
    for k, (category_id, shape, _) in enumerate(drawn):
        visible = owner == k
        if visible.sum() >= max(MIN_VISIBLE_PX, MIN_VISIBLE_FRACTION * shape.sum()):
            objects.append((category_id, visible))
    pixels = np.clip(canvas + rng.normal(0.0, SENSOR_NOISE, canvas.shape), 0, 255)
    return pixels.round().astype(np.uint8), objects


def _place(
    rng: np.random.Generator, category: str, radius: float, owner: np.ndarray, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray | None:
    """A shape at a random spot where it hides at most MAX_OVERLAP of itself or of any object already drawn
    (boxes cannot tell which of two heavily overlapping objects is meant); None when no spot is found."""
    size = owner.shape[0]
    for _ in range(PLACEMENT_TRIES):
        shape = _shape(rng, category, radius, rng.uniform(0.15 * size, 0.85 * size, 2), yy, xx)
        covered = owner[shape]
        covered = covered[covered >= 0]
        if covered.size > MAX_OVERLAP * shape.sum():
            continue
        hidden = np.bincount(covered, minlength=owner.max() + 1)
        visible = np.bincount(owner[owner >= 0], minlength=owner.max() + 1)
        if np.all(hidden <= MAX_OVERLAP * visible):
            return shape
    return None


def _colour(
    rng: np.random.Generator, avoid: list[np.ndarray], palette: tuple[tuple[float, float], tuple[float, float]]
) -> np.ndarray:
    """A random colour of `palette` (saturation and value ranges) far from `avoid` (or the farthest of 64
    tries), so occluding objects stand apart from each other."""
    best, best_distance = None, -1.0
    saturation, value = palette
    for _ in range(64):
        hsv = (rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
        colour = 255 * np.array(colorsys.hsv_to_rgb(*hsv))
        distance = min((float(np.linalg.norm(colour - a)) for a in avoid), default=math.inf)
        if distance >= MIN_COLOUR_DISTANCE:
            return colour
        if distance > best_distance:
            best, best_distance = colour, distance
    return best


def _background(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, colours: list[np.ndarray]
) -> np.ndarray:
    """Two-colour stripes, checks or smooth noise, plus a few unannotated clutter rectangles."""
    size = yy.shape[0]
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, math.pi), rng.uniform(24, 48)
        weight = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    elif kind == 1:
        period = rng.uniform(8, 24)
        weight = ((xx // period + yy // period) % 2).astype(np.float32)
    else:
        coarse = rng.uniform(0, 1, (size // 16 + 2, size // 16 + 2)).astype(np.float32)
        weight = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC)).clip(0, 1)
    canvas = colours[0] * (1 - weight[..., None]) + colours[1] * weight[..., None]
    for _ in range(rng.integers(2, 5)):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 16, size // 4, 2)
        shade = colours[int(rng.integers(2))] * rng.uniform(0.6, 1.2)
        canvas[y0 : y0 + h, x0 : x0 + w] = shade
    return canvas.astype(np.float32)


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """An object's fill: its colour modulated by fine stripes or dots of a darker shade."""
    period, angle = rng.uniform(16, 40), rng.uniform(0, math.pi)
    pattern = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(angle) + yy * math.sin(angle)) / period)
    depth = rng.uniform(0.1, 0.3)
    return colour * (1 - depth * pattern[..., None])


def _shape(
    rng: np.random.Generator, category: str, radius: float, centre: np.ndarray, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Boolean mask of one shape of `category`, randomly rotated and stretched."""
    angle = rng.uniform(0, math.pi)
    dx, dy = xx - centre[0], yy - centre[1]
    u = dx * math.cos(angle) + dy * math.sin(angle)
    v = -dx * math.sin(angle) + dy * math.cos(angle)
    if category == "ellipse":
        aspect = rng.uniform(0.5, 1.0)
        return (u / radius) ** 2 + (v / (radius * aspect)) ** 2 <= 1
    if category == "ring":
        aspect, hole = rng.uniform(0.7, 1.0), rng.uniform(0.35, 0.6)
        r = np.sqrt((u / radius) ** 2 + (v / (radius * aspect)) ** 2)
        return (r <= 1) & (r >= hole)
    theta = np.arctan2(v, u)
    if category == "blob":
        boundary = np.ones_like(theta)
        for k in (2, 3, 4):
            boundary += rng.uniform(0, 0.18) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        return np.hypot(u, v) <= radius * boundary
    points = int(rng.integers(5, 9))
    inner = rng.uniform(0.4, 0.65)
    angles = angle + np.arange(2 * points) * math.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, radius, radius * inner)
    vertices = [
        (float(centre[0] + r * math.cos(a)), float(centre[1] + r * math.sin(a)))
        for r, a in zip(radii, angles, strict=True)
    ]
    star = Image.new("1", (xx.shape[1], xx.shape[0]))
    ImageDraw.Draw(star).polygon(vertices, fill=1)
    return np.asarray(star, dtype=bool)
