"""`mal inference`: every input box labeled with a mask, by the local engine or one an installed package
offers (entry-point group `mal.inference_engines`), written as the input COCO json with masks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

from mal import checkpoint as ckpt
from mal.data import UnitCrops, eval_margins, label_units, unit_crops
from mal.errors import UserError
from mal.metrics import region_iou
from mal.predict import InstanceMask, force_prompts, paste_masks
from mal.runner.evaluate import load_module, write_json
from mal.spec import ExperimentSpec, with_values
from mal.spec.outputs import label_dump_location
from plumbing.coco import gt_mask, load_coco
from plumbing.coco_prompts import PROMPT_KEYS
from plumbing.devices import autocast, device, to_device

log = logging.getLogger("mal")

# An inference engine labels units (mal.data.label_units) and yields their annotations in any order, plus
# words for what did the work ("2 Ray actors"). "local" is below; the others are found through this
# entry-point group ("ray" is mal.runner.ray_labeling, which needs the `ray` extra), so mal alone needs no Ray.
ENGINE_GROUP = "mal.inference_engines"
Engine = Callable[[ExperimentSpec, list[list[dict]]], tuple[Iterable[dict[str, Any]], str]]


class Labeler:
    """A loaded MAL with its crop and threshold settings: one unit of boxes in, their annotations out.

    Every engine calls `label` on the same units, so every engine writes the same masks.
    """

    def __init__(self, spec: ExperimentSpec, on: torch.device | None = None) -> None:
        inf = spec.inference
        self.device = on if on is not None else device(inf.num_gpus)
        self.module = load_module(spec, inf.checkpoint).to(self.device)  # once per labeler: per process or actor
        self.use_amp = spec.train.use_amp
        self.with_iou = inf.load_mask
        self.thresholds = self.module.thresholds  # the spec's, or the one chosen in training
        self.margins = eval_margins(spec.train.test_margin_rate)
        self.crop_size = spec.dataset.crop_size

    def label(self, unit: list[dict], crops: dict[str, torch.Tensor] | None = None) -> list[dict[str, Any]]:
        """`crops` are the unit's `unit_crops` when a data-loader worker made them ahead."""
        crops = unit_crops(unit, self.margins, self.crop_size) if crops is None else crops
        boxes = {box["id"]: box for record in unit for box in record["boxes"]}
        with torch.inference_mode(), autocast(self.device, self.use_amp):
            logits = self.module.predict_logits(to_device(crops, self.device))
            return [self._annotation(inst, boxes[inst.ann_id]) for inst in paste_masks(logits, crops, self.thresholds)]

    def _annotation(self, inst: InstanceMask, box: dict) -> dict[str, Any]:
        inst = force_prompts(inst, box)
        out = {
            "id": inst.ann_id,
            "image_id": inst.image_id,
            "category_id": inst.category_id,
            "bbox": box["bbox"],
            "segmentation": inst.rle(),
            "area": float(inst.mask.sum()),  # the mask's area (the original wrote the box's)
            "iscrowd": int(box.get("iscrowd", 0)),
            "score": round(inst.score, 4),
        }
        # the prompts stay with their box, so a corrected click re-run can start from this file
        out |= {key: box[key] for key in PROMPT_KEYS if key in box}
        if self.with_iou and box.get("segmentation"):
            out["iou"] = round(region_iou(inst.mask, inst.region, gt_mask(box, *inst.image_hw)), 4)
        return out


def label_locally(spec: ExperimentSpec, units: list[list[dict]]) -> tuple[Iterable[dict[str, Any]], str]:
    """This process: one model, data-loader workers decoding and cropping the next units."""
    labeler = Labeler(spec)
    workers = spec.dataset.num_workers_per_gpu
    loader = torch.utils.data.DataLoader(
        UnitCrops(units, labeler.margins, labeler.crop_size),
        batch_size=None,  # a unit is already one network batch
        num_workers=workers,
        pin_memory=labeler.device.type == "cuda",
    )
    annotations = (ann for unit, crops in zip(units, loader, strict=True) for ann in labeler.label(unit, crops))
    return annotations, "1 process"


def _engine(name: str) -> Engine:
    if name == "local":
        return label_locally
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENGINE_GROUP) if ep.name == name]
    if not found:
        raise UserError(f"inference.engine={name}: no installed package offers this engine")
    try:
        return found[0].load()
    except ImportError as exc:
        raise UserError(
            f"inference.engine={name} needs {exc.name}, which is not installed: pip install 'automl-mal[{name}]'"
        ) from None


def infer(spec: ExperimentSpec) -> dict[str, Any]:
    """Label every input box: the input json with `annotations` replaced, one mask per box, same ids."""
    inf = spec.inference
    coco = load_coco(inf.ann_path, inf.img_dir, check_images=True)
    engine = _engine(inf.engine)
    # a registered model is fetched once, here, and every worker reads the same file
    spec = with_values(spec, {"inference.checkpoint": ckpt.resolve(inf.checkpoint)})
    units = label_units(coco, inf.batch_size, with_masks=inf.load_mask)
    start = time.perf_counter()
    annotations, workers = engine(spec, units)
    results = {ann["id"]: ann for ann in annotations}
    seconds = time.perf_counter() - start
    missing = [a["id"] for a in coco.anns if a["id"] not in results]
    if missing:  # an engine fault, never a user's: writing a file without these boxes would break the contract
        raise RuntimeError(f"inference engine {inf.engine} returned no annotation for {len(missing)} boxes, e.g. id {missing[0]}")
    output = dict(coco.raw)
    output["annotations"] = [results[a["id"]] for a in coco.anns]  # input order, every box
    path = write_json(output, label_dump_location(spec))
    empty = sum(1 for ann in results.values() if ann["area"] == 0)
    if empty:
        log.warning("%d of %d boxes got an empty mask (too small or low confidence); they are written all the same", empty, len(results))
    images = len({ann["image_id"] for ann in coco.anns})
    return {
        "path": path,
        "annotations": len(results),
        "images": images,
        "empty": empty,
        "seconds": seconds,
        "boxes_per_s": len(results) / seconds,
        "images_per_s": images / seconds,
        "workers": workers,
    }
