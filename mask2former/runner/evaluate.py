"""`mask2former evaluate` and `mask2former inference`: a trained network from its checkpoint, run over
dataset.val (mask AP into metrics.json) or dataset.test (the instances it finds, as a COCO json)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from pycocotools import mask as mask_utils

from mask2former import checkpoint as ckpt
from mask2former.classes import category_names, classes_of
from mask2former.data import InstanceImages, eval_resize, loader
from mask2former.module import Mask2FormerModule
from mask2former.names import METRICS_FILE, PREDICTIONS_FILE
from mask2former.spec import ExperimentSpec
from plumbing.coco import CocoSet, load_coco
from plumbing.devices import autocast, device
from plumbing.errors import UserError
from plumbing.files import atomic_write_text
from plumbing.storage import image_dir

log = logging.getLogger("mask2former")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def load_module(spec: ExperimentSpec, location: str, coco: CocoSet | None, val_gt: dict | None = None) -> Mask2FormerModule:
    """The network of a checkpoint, labelling with the categories it was trained on (else `coco`'s)."""
    raw = ckpt.load(location, foreign=True)
    try:
        state = ckpt.network_state(raw)
    except UserError as exc:
        raise UserError(f"{location}: {exc}") from None
    known = ckpt.trained_on(raw)
    if known:
        categories, classes = known
    elif coco is not None:
        classes = classes_of(spec, coco.categories)
        categories = category_names(coco.categories, classes, spec.dataset.class_agnostic)
    else:
        raise UserError(f"{location} does not say which categories it predicts; give dataset.test.instance_json with its categories")
    module = Mask2FormerModule(spec, classes, categories, val_gt=val_gt)
    trained = raw.get("mask2former_spec", {}).get("model", {}).get("backbone", {}).get("type")
    try:
        module.net.load_state_dict(state, strict=True)
    except RuntimeError:
        hint = f" (it was trained with model.backbone.type={trained})" if trained else ""
        raise UserError(f"{location} does not fit the spec's model.* settings{hint}") from None
    log.warning("loaded %d tensors from %s", len(state), location)
    return module.eval()


def _predict(module: Mask2FormerModule, dataset: InstanceImages, spec: ExperimentSpec, split: Any, num_gpus: int):
    """(image_id, instances) for every image, on the GPU when there is one."""
    on = device(num_gpus)
    module = module.to(on)
    batches = loader(dataset, split.batch_size, split.num_workers, pin_memory=spec.dataset.pin_memory)
    with torch.inference_mode(), autocast(on, spec.train.precision == "fp16"):
        for batch in batches:
            batch = {k: v.to(on) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            yield from zip(batch["image_id"], module.predict_batch(batch), strict=True)


def evaluate(spec: ExperimentSpec) -> tuple[dict[str, Any], Path]:
    """Mask AP (0.5:0.95), AP50, AP75 and by size of evaluate.checkpoint on every image of dataset.val."""
    d, e = spec.dataset, spec.evaluate
    coco = load_coco(d.val.instance_json, d.val.img_dir, check_images=True)
    module = load_module(spec, str(e.checkpoint), coco, val_gt=coco.raw)
    images = InstanceImages(coco, sorted(coco.images), module.classes, eval_resize(d.augmentation), d.pixel_mean, d.pixel_std, with_targets=False)
    detections, seen = [], []
    for image_id, instances in _predict(module, images, spec, d.val, e.num_gpus):
        seen.append(image_id)
        detections += [{"image_id": image_id, "category_id": i["category_id"], "segmentation": i["rle"], "score": i["score"]} for i in instances]
    metrics: dict[str, Any] = {**module.metrics(detections, seen), "num_images": len(seen), "num_detections": len(detections)}
    metrics["checkpoint"] = str(e.checkpoint)
    path = spec.output_dir("evaluate") / METRICS_FILE
    atomic_write_text(path, json.dumps(metrics, indent=2, allow_nan=False))
    return metrics, path


def _folder_images(folder: str) -> CocoSet:
    """Every image file of a folder as a COCO image list (ids in name order, sizes from the headers)."""
    root = image_dir(folder)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"dataset.test.img_dir: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    images = {}
    for k, path in enumerate(files, start=1):
        try:
            with Image.open(path) as image:
                width, height = image.size
        except (OSError, SyntaxError, ValueError) as exc:
            raise UserError(f"dataset.test.img_dir: {path} cannot be read as an image ({exc})") from None
        images[k] = {"id": k, "file_name": str(path.relative_to(root)), "width": width, "height": height}
    raw = {"images": list(images.values()), "annotations": [], "categories": []}
    return CocoSet(raw, images, [], {}, root, source=folder)


def infer(spec: ExperimentSpec) -> dict[str, Any]:
    """The instances found in dataset.test's images (scored at least model.object_mask_threshold), written as a
    COCO json: the images, the categories, and one annotation (RLE mask, box, score) per instance."""
    d, i = spec.dataset, spec.inference
    start = time.perf_counter()
    coco = load_coco(d.test.instance_json, d.test.img_dir, check_images=True) if d.test.instance_json else _folder_images(d.test.img_dir)
    module = load_module(spec, str(i.checkpoint), coco if d.test.instance_json else None)
    images = InstanceImages(coco, sorted(coco.images), module.classes, eval_resize(d.augmentation), d.pixel_mean, d.pixel_std, with_targets=False)
    annotations = []
    for image_id, instances in _predict(module, images, spec, d.test, i.num_gpus):
        for inst in instances:
            if inst["score"] < spec.model.object_mask_threshold:
                continue
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": inst["category_id"],
                "segmentation": inst["rle"], "area": inst["area"], "iscrowd": 0, "score": round(inst["score"], 5),
                "bbox": [round(v, 2) for v in mask_utils.toBbox(inst["rle"]).tolist()],
            })  # fmt: skip
    out = {"images": [coco.images[k] for k in sorted(coco.images)], "categories": module.categories, "annotations": annotations}
    path = spec.output_dir("inference") / PREDICTIONS_FILE
    atomic_write_text(path, json.dumps(out))
    seconds = time.perf_counter() - start
    return {"images": len(coco.images), "instances": len(annotations), "seconds": seconds, "path": path}
