"""The boxes a run uses, and the datasets of their crops: random train views (student and teacher), fixed
test crops; each distinct image is decoded once per batch, through the process's image cache."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset

from mal.data import images
from mal.data.augment import colour_augment
from mal.data.crops import box_crop, crop_prompts, eval_item, eval_margins, normalize, train_margins
from plumbing.coco import CocoSet

FLIP_P = 0.5


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in batch]) for key in batch[0]}


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
        pixels = {iid: self._image(iid) for iid in dict.fromkeys(ann["image_id"] for ann in anns)}
        return [self._item(i, ann, pixels[ann["image_id"]]) for i, ann in zip(indices, anns, strict=True)]

    def _item(self, index: int, ann: dict, image: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _image(self, image_id: int) -> np.ndarray:
        info = self.coco.images[image_id]
        return images.IMAGE_CACHE.load(Path(self.coco.image_path(image_id)), image_id, (info["height"], info["width"]))


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
        crop, boxmask, ext_box = box_crop(image, ann["bbox"], train_margins(rng, self.margin_rate), self.crop_size)
        prompts = crop_prompts(ann, ext_box, self.crop_size)
        if rng.random() < FLIP_P:
            crop, boxmask, prompts = F.horizontal_flip(crop), F.horizontal_flip(boxmask), prompts.flip(-1)
        return {
            "image": normalize(colour_augment(crop, rng)),
            "timage": normalize(crop),
            "boxmask": boxmask,
            "box_area": torch.tensor(ann["bbox"][2] * ann["bbox"][3], dtype=torch.float32),
            "prompts": prompts,
            # MIL reads a box as tight; one derived from prompts is not, so MIL leaves it out
            "box_given": torch.tensor(float(ann["id"] not in self.coco.derived_boxes)),
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
