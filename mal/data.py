"""MAL's box-centred crops: one sample per box, expanded crop with wrap-around fill, train augmentation.

Geometry follows the original MAL (`_expand_box`, wrap fill, non-aspect-preserving resize). One fix: the
box mask is drawn geometrically in crop coordinates, so wrapped-in content never carries box pixels.
Image crops are resized bilinearly (antialiased); the box mask samples the crop grid nearest-neighbour.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from PIL import Image
from torch.utils.data import Dataset, Sampler

from mal.coco import CocoSet, gt_mask
from mal.errors import UserError
from mal.metrics import class_balanced_miou, mask_iou

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FLIP_P = 0.5
JITTER_P, BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.5, 0.4, 0.4, 0.2, 0.1
GRAYSCALE_P = 0.2
BLUR_P, BLUR_SIGMA = 0.5, (0.1, 2.0)
MIN_SIDE_PX = 2

Box = tuple[int, int, int, int]


def train_instances(coco: CocoSet, min_obj_size: float, max_obj_size: float) -> tuple[list[dict], int]:
    """Boxes MAL learns from (size window, w and h > 2 px, no crowds) and how many were skipped."""
    kept = [
        ann
        for ann in coco.anns
        if min_obj_size < ann["bbox"][2] * ann["bbox"][3] < max_obj_size
        and ann["bbox"][2] > MIN_SIDE_PX
        and ann["bbox"][3] > MIN_SIDE_PX
        and not ann.get("iscrowd")
    ]
    return kept, len(coco.anns) - len(kept)


def eval_instances(coco: CocoSet) -> list[dict]:
    """Every box, crowds and tiny ones too: evaluation and inference decide, so nothing is dropped silently."""
    return list(coco.anns)


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
    """Pixel range [x0, x1) x [y0, y1) that a (fractional) box touches, clipped to the image."""
    x, y, w, h = bbox_xywh
    height, width = image_hw
    return (
        max(0, math.floor(x)),
        max(0, math.floor(y)),
        min(width, math.ceil(x + w)),
        min(height, math.ceil(y + h)),
    )


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


def colour_augment(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The student branch: ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.5 in random order, grayscale p=0.2,
    Gaussian blur p=0.5; parameters come from `rng` so a sample is reproducible."""
    if rng.random() < JITTER_P:
        ops = [
            (F.adjust_brightness, rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)),
            (F.adjust_contrast, rng.uniform(1 - CONTRAST, 1 + CONTRAST)),
            (F.adjust_saturation, rng.uniform(1 - SATURATION, 1 + SATURATION)),
            (F.adjust_hue, rng.uniform(-HUE, HUE)),
        ]
        for k in rng.permutation(len(ops)):
            op, factor = ops[k]
            image = op(image, float(factor))
    if rng.random() < GRAYSCALE_P:
        image = F.rgb_to_grayscale(image, num_output_channels=3)
    if rng.random() < BLUR_P:
        sigma = float(rng.uniform(*BLUR_SIGMA))
        kernel = 2 * math.ceil(3 * sigma) + 1
        image = F.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
    return image


def normalize(image: torch.Tensor) -> torch.Tensor:
    """uint8 (3, H, W) -> float32 scaled to [0, 1] and ImageNet-normalised."""
    return F.normalize(F.to_dtype(image, torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)


def decode_image(path: Path | str) -> np.ndarray:
    """RGB uint8 (H, W, 3) pixels of an image file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        # PIL reports some broken files as SyntaxError/ValueError; the message must stay one line
        raise UserError(f"{path}: cannot read image ({' '.join(str(exc).split())})") from None


def load_image(path: Path | str, image_id: int, expected_hw: tuple[int, int]) -> np.ndarray:
    """Decoded pixels, refused when their size disagrees with the annotations (the boxes would be off)."""
    image = decode_image(path)
    if image.shape[:2] != tuple(expected_hw):
        raise UserError(
            f"{path}: image is {image.shape[1]}x{image.shape[0]} but its annotations say "
            f"{expected_hw[1]}x{expected_hw[0]} (image id {image_id})"
        )
    return image


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


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in batch]) for key in batch[0]}


class ImageCache:
    """Decoded images shared by every dataset of this process, bounded in bytes, least recently used out.

    A study's next trial often runs in the process of a finished one (automl reuses Ray actors), and then
    starts with its images decoded. Keyed by path, size and modification time, so an edited file is read again.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._images: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def load(self, path: Path, image_id: int, expected_hw: tuple[int, int]) -> np.ndarray:
        try:
            st = path.stat()
            key = (str(path), st.st_size, st.st_mtime_ns)
        except OSError:
            key = None  # load_image names the problem
        if key in self._images:
            self._images.move_to_end(key)
            return self._images[key]
        image = load_image(path, image_id, expected_hw)
        if key is not None and image.nbytes <= self.max_bytes:
            self._images[key] = image
            self.bytes += image.nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self._images.popitem(last=False)[1].nbytes
        return image


IMAGE_CACHE = ImageCache(int(float(os.environ.get("MAL_IMAGE_CACHE_MB", "1024")) * 2**20))


class _BoxCrops(Dataset):
    """Shared machinery: batched fetch that decodes each distinct image once, through the process's
    image cache (every data-loader worker keeps its own)."""

    def __init__(self, coco: CocoSet, instances: list[dict], crop_size: int) -> None:
        self.coco = coco
        self.instances = instances
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.instances)

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list) -> list[dict[str, torch.Tensor]]:
        """Indices are sample numbers, or (epoch, sample) pairs from an epoch-tagging sampler."""
        anns = [self.instances[i[1] if isinstance(i, tuple) else i] for i in indices]
        images = {iid: self._image(iid) for iid in dict.fromkeys(ann["image_id"] for ann in anns)}
        return [self._item(i, ann, images[ann["image_id"]]) for i, ann in zip(indices, anns, strict=True)]

    def _item(self, index: int, ann: dict, image: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _image(self, image_id: int) -> np.ndarray:
        info = self.coco.images[image_id]
        return IMAGE_CACHE.load(Path(self.coco.image_path(image_id)), image_id, (info["height"], info["width"]))


class MALTrainDataset(_BoxCrops):
    """Random crop + flip shared by both views; colour augmentation on the student view only.

    Randomness is seeded by (seed, epoch, index). Call `set_epoch` before each epoch's iterator is created
    (workers copy the dataset when they start, so persistent workers would keep a stale epoch).
    """

    def __init__(
        self,
        coco: CocoSet,
        instances: list[dict],
        crop_size: int,
        margin_rate: Sequence[float],
        seed: int,
    ) -> None:
        super().__init__(coco, instances, crop_size)
        self.margin_rate = tuple(margin_rate)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _item(self, index: int | tuple[int, int], ann: dict, image: np.ndarray) -> dict[str, torch.Tensor]:
        epoch, index = index if isinstance(index, tuple) else (self.epoch, index)
        rng = np.random.default_rng((self.seed, epoch, index))
        crop, boxmask, _ = box_crop(image, ann["bbox"], train_margins(rng, self.margin_rate), self.crop_size)
        if rng.random() < FLIP_P:
            crop, boxmask = F.horizontal_flip(crop), F.horizontal_flip(boxmask)
        return {
            "image": normalize(colour_augment(crop, rng)),
            "timage": normalize(crop),
            "boxmask": boxmask,
            "box_area": torch.tensor(ann["bbox"][2] * ann["bbox"][3], dtype=torch.float32),
        }


class MALEvalDataset(_BoxCrops):
    """Deterministic test crops plus what paste-back and metrics need (crop box, ids, image size)."""

    def __init__(
        self,
        coco: CocoSet,
        instances: list[dict],
        crop_size: int,
        test_margin_rate: Sequence[float],
    ) -> None:
        super().__init__(coco, instances, crop_size)
        self.margins = eval_margins(test_margin_rate)

    def _item(self, index: int, ann: dict, image: np.ndarray) -> dict[str, torch.Tensor]:
        return eval_item(image, ann, self.margins, self.crop_size)


def eval_item(image: np.ndarray, ann: dict, margins: np.ndarray, crop_size: int) -> dict[str, torch.Tensor]:
    """One box's deterministic test crop plus what paste-back and metrics need (crop box, ids, image size)."""
    crop, boxmask, ext_box = box_crop(image, ann["bbox"], margins, crop_size)
    return {
        "image": normalize(crop),
        "boxmask": boxmask,
        "box_area": torch.tensor(ann["bbox"][2] * ann["bbox"][3], dtype=torch.float32),
        "ext_box": torch.tensor(ext_box, dtype=torch.float32),
        "bbox": torch.tensor(ann["bbox"], dtype=torch.float32),
        "ann_id": torch.tensor(ann["id"], dtype=torch.int64),
        "image_id": torch.tensor(ann["image_id"], dtype=torch.int64),
        "category_id": torch.tensor(ann["category_id"], dtype=torch.int64),
        "image_hw": torch.tensor(image.shape[:2], dtype=torch.int64),
    }


# ---------------------------------------------------------------------------------------------- labeling work

LABEL_KEYS = ("id", "image_id", "category_id", "bbox", "iscrowd")


def label_units(coco: CocoSet, max_boxes: int, with_masks: bool = False) -> list[list[dict]]:
    """The input's boxes as units of at most `max_boxes` (one network batch): whole images in order of their
    first box, packed greedily; an image with more boxes is split over units of its own.

    A unit is plain JSON-able data (image path and size, its boxes; no pixels). Every inference engine feeds
    the network one unit at a time, and a batch's output depends on its members (size buckets, kernels), so
    engines that share the units write the same masks.
    """
    boxes_of: dict[int, list[dict]] = {}
    keys = (*LABEL_KEYS, "segmentation") if with_masks else LABEL_KEYS
    for ann in coco.anns:
        boxes_of.setdefault(ann["image_id"], []).append({k: ann[k] for k in keys if k in ann})
    units: list[list[dict]] = []
    unit: list[dict] = []
    filled = 0
    for image_id, boxes in boxes_of.items():
        info = coco.images[image_id]
        for start in range(0, len(boxes), max_boxes):
            part = boxes[start : start + max_boxes]
            if unit and filled + len(part) > max_boxes:
                units.append(unit)
                unit, filled = [], 0
            record = {"image_id": image_id, "path": str(coco.image_path(image_id)), "hw": [info["height"], info["width"]]}
            unit.append({**record, "boxes": part})
            filled += len(part)
    if unit:
        units.append(unit)
    return units


def unit_crops(unit: list[dict], margins: np.ndarray, crop_size: int) -> dict[str, torch.Tensor]:
    """The batched test crops of a unit's boxes, in unit order; each image is decoded once."""
    items = []
    for record in unit:
        image = load_image(record["path"], record["image_id"], tuple(record["hw"]))
        items += [eval_item(image, box, margins, crop_size) for box in record["boxes"]]
    return collate(items)


class UnitCrops(Dataset):
    """Units as a map-style dataset, so data-loader workers decode and crop ahead of the network."""

    def __init__(self, units: list[list[dict]], margins: np.ndarray, crop_size: int) -> None:
        self.units = units
        self.margins = margins
        self.crop_size = crop_size

    def __len__(self) -> int:
        return len(self.units)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return unit_crops(self.units[index], self.margins, self.crop_size)


def rank_and_world() -> tuple[int, int]:
    """This process's DDP rank and the world size; (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSampler(Sampler[int]):
    """A (seed, epoch)-seeded order, sharded over DDP ranks, that resumes mid-epoch.

    Under DDP each rank takes every world-th sample of the epoch's order; with `pad`, the order is first
    repeated up to a multiple of the world size so every rank runs the same number of steps (training
    needs that for its gradient all-reduce; validation does not, and gathers then de-duplicates). The rank
    is read when iterating, because Lightning creates the process group after the loaders exist.

    Data-loader workers pull indices ahead of training, so the sampler cannot count what was trained on:
    the training loop reports this rank's finished samples (`consumed`). `state_dict()` goes into the
    checkpoint; after `load_state_dict()`, the next iteration skips exactly the consumed samples. `__len__`
    stays the full share because Lightning restores its own batch counter and ends the epoch at that length.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, tag_epoch: bool = False, pad: bool = True) -> None:
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.pad = pad
        # (epoch, index) pairs carry the epoch to the dataset's augmentation seed, even inside worker
        # processes that copied the dataset before Lightning announced the epoch
        self.tag_epoch = tag_epoch
        self.epoch = 0
        self.consumed = 0

    def set_epoch(self, epoch: int) -> None:
        """A new epoch starts from its beginning; re-announcing the current epoch (on resume) keeps the skip."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.n)

    def share(self) -> np.ndarray:
        """This rank's part of the epoch's order."""
        rank, world = rank_and_world()
        order = self.order()
        if world == 1:
            return order
        if self.pad:
            order = np.resize(order, math.ceil(self.n / world) * world)  # repeats from the start, as DistributedSampler
        return order[rank::world]

    def __iter__(self):
        order = self.share()[self.consumed :].tolist()
        return iter([(self.epoch, i) for i in order] if self.tag_epoch else order)

    def __len__(self) -> int:
        return len(self.share())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])


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
