"""Images and their instance masks as Mask2Former reads them: resized by the shortest edge (one of
train_min_size, capped by train_max_size), flipped and randomly cropped for training, resized by
test_min_size / test_max_size otherwise; batches padded to a multiple of 32 with a pixel mask."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from plumbing.coco import CocoSet, gt_mask
from plumbing.errors import UserError

SIZE_DIVISOR = 32  # the backbone's deepest stride: padded sides divide into whole cells


def scaled_size(height: int, width: int, shortest: int, longest: int) -> tuple[int, int]:
    """Detectron2's ResizeShortestEdge: the shortest side to `shortest`, unless the longest would pass `longest`."""
    scale = shortest / min(height, width)
    if max(height, width) * scale > longest:
        scale = longest / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


@dataclass(frozen=True)
class Resize:
    """How a split sizes its images; a training resize draws one shortest edge per image and crops."""

    shortest: tuple[int, ...]
    longest: int
    crop: tuple[int, int] | None = None  # [height, width]; training only
    flip: bool = False


def train_resize(a: Any) -> Resize:
    return Resize(tuple(a.train_min_size), a.train_max_size, tuple(a.train_crop_size), a.random_flip)


def eval_resize(a: Any) -> Resize:
    return Resize((a.test_min_size,), a.test_max_size)


def read_rgb(coco: CocoSet, image_id: int) -> np.ndarray:
    """The image as (H, W, 3) uint8; a file that fails to decode is one line naming it."""
    path = coco.image_path(image_id)
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(f"{coco.source}: image file {path} (image id {image_id}) cannot be decoded ({exc})") from None


class InstanceImages(Dataset):
    """One item per image: the normalised image, its instance masks and class indices at the model's size.

    Crowd regions and annotations without a mask are not instances to learn or find (COCOeval ignores crowds).
    """

    def __init__(
        self, coco: CocoSet, image_ids: list[int], classes: dict[int, int], resize: Resize,
        mean: list[float], std: list[float], with_targets: bool = True,
    ) -> None:
        self.coco, self.image_ids, self.classes, self.resize = coco, image_ids, classes, resize
        self.with_targets = with_targets
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self.anns: dict[int, list[dict]] = {iid: [] for iid in image_ids}
        for ann in coco.anns:
            if ann["image_id"] in self.anns and ann.get("segmentation") and not ann.get("iscrowd"):
                self.anns[ann["image_id"]].append(ann)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.image_ids[index]
        rgb = read_rgb(self.coco, image_id)
        h, w = rgb.shape[:2]
        r = self.resize
        size = scaled_size(h, w, random.choice(r.shortest), r.longest)
        image = torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
        image = (image - self.mean) / self.std
        item: dict[str, Any] = {"image_id": image_id, "original_size": (h, w), "size": size}
        if not self.with_targets:
            item["image"] = image
            return item
        anns = self.anns[image_id]
        masks = torch.from_numpy(np.stack([gt_mask(a, h, w) for a in anns])) if anns else torch.zeros(0, h, w, dtype=torch.uint8)
        masks = F.interpolate(masks[None].float(), size=size, mode="nearest")[0]
        labels = torch.tensor([self.classes[a["category_id"]] for a in anns], dtype=torch.long)
        if r.flip and random.random() < 0.5:
            image, masks = image.flip(-1), masks.flip(-1)
        if r.crop is not None:
            image, masks = _random_crop(image, masks, r.crop)
        keep = masks.flatten(1).sum(1) > 0  # an object the crop cut away is not there to find
        item.update(image=image, masks=masks[keep], labels=labels[keep], size=tuple(image.shape[-2:]))
        return item


def _random_crop(image: torch.Tensor, masks: torch.Tensor, crop: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = image.shape[-2:]
    ch, cw = min(crop[0], h), min(crop[1], w)
    y0, x0 = random.randint(0, h - ch), random.randint(0, w - cw)
    return image[:, y0 : y0 + ch, x0 : x0 + cw], masks[:, y0 : y0 + ch, x0 : x0 + cw]


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Images padded at the bottom and right to one size divisible by 32; `pixel_mask` marks the real pixels."""
    height = _padded(max(item["image"].shape[1] for item in items))
    width = _padded(max(item["image"].shape[2] for item in items))
    images = torch.zeros(len(items), 3, height, width)
    pixel_mask = torch.zeros(len(items), height, width, dtype=torch.long)
    batch: dict[str, Any] = {"image_id": [], "original_size": [], "size": []}
    for k, item in enumerate(items):
        h, w = item["image"].shape[1:]
        images[k, :, :h, :w] = item["image"]
        pixel_mask[k, :h, :w] = 1
        for key in batch:
            batch[key].append(item[key])
    batch.update(pixel_values=images, pixel_mask=pixel_mask)
    if "masks" in items[0]:
        batch["mask_labels"] = [_pad_masks(item["masks"], height, width) for item in items]
        batch["class_labels"] = [item["labels"] for item in items]
    return batch


def _padded(side: int) -> int:
    return math.ceil(side / SIZE_DIVISOR) * SIZE_DIVISOR


def _pad_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return F.pad(masks, (0, width - masks.shape[-1], 0, height - masks.shape[-2]))


def loader(dataset: Dataset, batch_size: int, workers: int, shuffle: bool = False, pin_memory: bool = False) -> DataLoader:
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers, collate_fn=collate,
        pin_memory=pin_memory and torch.cuda.is_available(), persistent_workers=workers > 0,
    )
