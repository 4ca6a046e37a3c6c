"""Benchmark: the downstream proof. Is an instance segmenter trained on MAL's masks as good as one trained on
human masks? (The MAL paper's headline: 97.4% of the fully supervised mask AP on COCO.)

The protocol, fixed before any figure was seen:
- **MAL's labels**: `mal train -e experiments/mal_coco128.yaml` on the boxes of coco128-seg train (the masks
  removed from its training file: what a labelling team has), then its *last* checkpoint labels those same
  boxes with `mal inference` (the product's use: label the boxes you trained on).
- **three training files**, identical but for the masks: (a) the human masks, (b) MAL's masks, (c) each box
  filled as its mask. Every annotation keeps its id, image, category and box.
- **Mask2Former** (`experiments/mask2former_coco128.yaml`, class-agnostic: what is compared is the masks)
  trained on each at the same budget and seeds, validated only at the end, and the *last* checkpoint scored
  on coco128-seg val by `mask2former evaluate` (COCO mask AP over every val image).
- reported: mask AP, AP50 and AP75 per variant (mean over the seeds, and each seed), (b)/(a) and (c)/(a) as
  "% of fully supervised", and the quality of the labels themselves on train (mIoU against the human masks).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, bin_path, console, data_dir, print_table, run_logged, write_result

NAME = "downstream"
DATA = ("coco128-seg",)
MAL_SPEC = ROOT / "experiments" / "mal_coco128.yaml"
M2F_SPEC = ROOT / "experiments" / "mask2former_coco128.yaml"
SEEDS_ENV = "BENCH_DOWNSTREAM_SEEDS"  # how many Mask2Former seeds per variant (default 2)
FULL = {"mal": [], "mask2former": [], "seeds": int(os.environ.get(SEEDS_ENV, "2"))}
QUICK = {"mal": ["train.num_epochs=1"], "mask2former": ["train.num_epochs=1"], "seeds": 1}
VARIANTS = ("human masks", "MAL masks", "box-fill masks")
AP = ("mask_AP", "mask_AP50", "mask_AP75", "mask_AP_large")


def _box_polygon(bbox: list[float]) -> list[list[float]]:
    x, y, w, h = bbox
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def training_files(train_json: Path, mal_labels: Path, folder: Path) -> dict[str, Path]:
    """The three training files: the same annotations with human, MAL's or box-fill masks."""
    raw = json.loads(train_json.read_text())
    labelled = {a["id"]: a["segmentation"] for a in json.loads(mal_labels.read_text())["annotations"]}
    masks = {
        "human masks": lambda a: a["segmentation"],
        "MAL masks": lambda a: labelled[a["id"]],
        "box-fill masks": lambda a: _box_polygon(a["bbox"]),
    }
    out = {}
    for variant, mask_of in masks.items():
        anns = [a if a.get("iscrowd") else {**a, "segmentation": mask_of(a)} for a in raw["annotations"]]
        path = folder / f"train-{variant.split()[0].lower()}.json"
        path.write_text(json.dumps({**raw, "annotations": anns}))
        out[variant] = path
    return out


def _mal_labels(folder: Path, train: Path, val: Path, images: Path, overrides: list[str]) -> tuple[Path, dict[str, float]]:
    """MAL trained on train's boxes alone, then its last checkpoint labelling those boxes (IoU vs the masks)."""
    from mal.spec import load_spec

    raw = json.loads(train.read_text())
    boxes_only = folder / "train-boxes.json"
    boxes_only.write_text(json.dumps({**raw, "annotations": [{k: v for k, v in a.items() if k != "segmentation"} for a in raw["annotations"]]}))
    epochs = load_spec(MAL_SPEC, overrides).train.num_epochs
    args = [f"dataset.train_ann_path={boxes_only}", f"dataset.train_img_dir={images}", f"dataset.val_ann_path={val}",
            f"dataset.val_img_dir={images}", *overrides, f"train.validation_interval={epochs}", f"results_dir={folder / 'mal'}"]  # fmt: skip
    start = time.time()
    run_logged([bin_path("mal"), "train", "-e", str(MAL_SPEC), *args], folder / "mal-train.log")
    train_seconds = time.time() - start
    labels = folder / "mal-labels.json"
    run_logged([
        bin_path("mal"), "inference", "-e", str(MAL_SPEC), *overrides, f"results_dir={folder / 'mal'}",
        f"inference.checkpoint={folder / 'mal' / 'train' / 'mal_model_latest.pth'}", f"inference.ann_path={train}",
        f"inference.img_dir={images}", f"inference.label_dump_path={labels}", "inference.load_mask=true",
    ], folder / "mal-inference.log")  # fmt: skip
    return labels, {"mal_train_seconds": round(train_seconds, 1), **_label_quality(train, labels)}


def _label_quality(train: Path, labels: Path) -> dict[str, float]:
    """Class-balanced mIoU of MAL's train labels and of the filled boxes, against the human masks."""
    from mal.data.baseline import box_fill_miou
    from mal.metrics import class_balanced_miou
    from plumbing.coco import load_coco

    coco = load_coco(str(train))
    labelled = [a for a in json.loads(labels.read_text())["annotations"] if "iou" in a]
    return {
        "train_labels_mIoU_MAL": round(class_balanced_miou([a["iou"] for a in labelled], [a["category_id"] for a in labelled]), 4),
        "train_labels_mIoU_box_fill": round(box_fill_miou(coco), 4),
        "train_labels_scored": len(labelled),
    }


def _mask2former(folder: Path, train: Path, val: Path, images: Path, seed: int, overrides: list[str]) -> dict[str, Any]:
    """Mask2Former trained on one training file; its last checkpoint scored on val."""
    from mask2former.spec import load_spec

    epochs = load_spec(M2F_SPEC, overrides).train.num_epochs
    args = [f"dataset.train.instance_json={train}", f"dataset.train.img_dir={images}", f"dataset.val.instance_json={val}",
            f"dataset.val.img_dir={images}", f"train.seed={seed}", *overrides, f"train.validation_interval={epochs}",
            f"results_dir={folder}"]  # fmt: skip
    start = time.time()
    run_logged([bin_path("mask2former"), "train", "-e", str(M2F_SPEC), *args], folder.with_suffix(".train.log"))
    seconds = time.time() - start
    last = folder / "train" / "mask2former_model_latest.pth"
    run_logged([bin_path("mask2former"), "evaluate", "-e", str(M2F_SPEC), *args, f"evaluate.checkpoint={last}"],
               folder.with_suffix(".evaluate.log"))  # fmt: skip
    metrics = json.loads((folder / "evaluate" / "metrics.json").read_text())
    return {**{k: metrics[k] for k in AP}, "train_seconds": round(seconds, 1)}


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per variant: the mean of each AP figure over the seeds; for MAL's and the boxes' masks, the share of the
    human masks' mean."""
    out: dict[str, Any] = {}
    for variant, per_seed in runs.items():
        out[variant] = {k: round(statistics.fmean(r[k] for r in per_seed), 4) for k in AP}
        out[variant]["seeds"] = per_seed
    human = out["human masks"]
    for variant in VARIANTS[1:]:
        out[variant]["percent_of_fully_supervised"] = {
            k: (round(100 * out[variant][k] / human[k], 1) if human[k] > 0 else None) for k in AP
        }
    return out


def run(quick: bool) -> None:
    s = QUICK if quick else FULL
    root = data_dir() / "coco128-seg"
    train, val, images = root / "annotations" / "train.json", root / "annotations" / "val.json", root / "images"
    folder = Path(tempfile.mkdtemp(prefix="bench-downstream-"))
    console.print("MAL: training on coco128-seg train's boxes, then labelling them ...")
    labels, label_figures = _mal_labels(folder, train, val, images, s["mal"])
    console.print(f"MAL's train labels: mIoU {label_figures['train_labels_mIoU_MAL']:.3f} "
                  f"(box-fill {label_figures['train_labels_mIoU_box_fill']:.3f})")
    files = training_files(train, labels, folder)
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for seed in range(s["seeds"]):
        for variant in VARIANTS:
            console.print(f"Mask2Former on {variant}, seed {seed} ...")
            slug = f"m2f-{variant.split()[0].lower()}-{seed}"
            runs[variant].append({"seed": seed, **_mask2former(folder / slug, files[variant], val, images, seed, s["mask2former"])})
    shutil.rmtree(folder, ignore_errors=True)
    figures = {**summarise(runs), "labels": label_figures}
    rows = [[variant, *(figures[variant][k] for k in AP),
             *((figures[variant]["percent_of_fully_supervised"][k] for k in AP) if variant != VARIANTS[0] else [100] * len(AP))]
            for variant in VARIANTS]  # fmt: skip
    print_table(f"downstream: Mask2Former trained on each set of masks, mask AP on coco128-seg val{' [quick]' if quick else ''}",
                ["trained on", "mask AP", "AP50", "AP75", "AP large", "% AP", "% AP50", "% AP75", "% AP large"], rows)
    settings = {
        "mal_spec": str(MAL_SPEC.relative_to(ROOT)), "mal_overrides": s["mal"],
        "mask2former_spec": str(M2F_SPEC.relative_to(ROOT)), "mask2former_overrides": s["mask2former"],
        "seeds": s["seeds"], "checkpoints": "last epoch (MAL and Mask2Former)", "evaluation": "COCO mask AP, class-agnostic",
    }
    write_result(NAME, settings, figures, quick)
