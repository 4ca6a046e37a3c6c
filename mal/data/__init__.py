"""MAL's data: which boxes a run uses, their crops (expansion, wrap fill, box mask, prompt maps),
augmentation, image decoding and cache, the resumable epoch sampler, labeling units, and the box-fill baseline."""

from mal.data.augment import colour_augment
from mal.data.baseline import box_fill_miou
from mal.data.crops import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Box,
    box_crop,
    box_mask,
    box_pixels,
    crop_box_mask,
    crop_wrap,
    eval_item,
    eval_margins,
    expand_box,
    normalize,
    train_margins,
)
from mal.data.datasets import MALEvalDataset, MALTrainDataset, collate
from mal.data.images import IMAGE_CACHE, ImageCache, decode_image, load_image
from mal.data.sampler import EpochSampler, rank_and_world
from mal.data.units import LABEL_KEYS, UnitCrops, label_units, unit_crops
from mal.instances import eval_instances, train_instances, usable_train_instances

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_CACHE",
    "LABEL_KEYS",
    "Box",
    "EpochSampler",
    "ImageCache",
    "MALEvalDataset",
    "MALTrainDataset",
    "UnitCrops",
    "box_crop",
    "box_fill_miou",
    "box_mask",
    "box_pixels",
    "collate",
    "colour_augment",
    "crop_box_mask",
    "crop_wrap",
    "decode_image",
    "eval_instances",
    "eval_item",
    "eval_margins",
    "expand_box",
    "label_units",
    "load_image",
    "normalize",
    "rank_and_world",
    "train_instances",
    "train_margins",
    "unit_crops",
    "usable_train_instances",
]
