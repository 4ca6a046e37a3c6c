"""The GPU check's Mask2Former part: `mask2former train` on the device (bf16 autocast on a GPU), then, on a
GPU, `mask2former evaluate` of its best checkpoint there and on the CPU. Without a GPU the training alone runs
(the suite tests `mask2former evaluate` on the CPU already), and its own last validation gives the AP.

What it shows: the second model's Lightning run, Hungarian-matched losses and COCO evaluation work on a GPU
(transformers' Mask2Former under bf16), its losses stay finite, and its mask AP on the GPU is the CPU's to
within what bf16 moves. At 3 epochs the AP itself is low: the part checks the path, not the model.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.common import ROOT

SPEC = ROOT / "experiments" / "mask2former_coco128.yaml"
BEST_FILE = "mask2former_model_best.pth"
AP_TOLERANCE = 0.02  # bf16 moves scores and so the ranking COCO's AP reads; a device bug moves it far more
GPU = {
    "photos": True, "epochs": 3,
    "overrides": ["train.num_gpus=1", "train.precision=fp16", "dataset.train.batch_size=16", "dataset.val.batch_size=16",
                  "dataset.train.num_workers=4", "dataset.val.num_workers=4"],
}  # fmt: skip
# the CPU's: the same recipe shrunk to seconds (tests/test_mask2former.py's tiny model, class-agnostic), trained
# on the demo's 20 val images rather than its 60 train ones
CPU = {
    "photos": False, "epochs": 1, "train_split": "val",
    "overrides": [
        "train.num_gpus=0", "dataset.train.batch_size=4", "dataset.val.batch_size=4",
        "dataset.train.num_workers=0", "dataset.val.num_workers=0", "dataset.augmentation.train_min_size=[64, 80]",
        "dataset.augmentation.train_max_size=96", "dataset.augmentation.train_crop_size=[64, 64]",
        "dataset.augmentation.test_min_size=64", "dataset.augmentation.test_max_size=96",
        "model.mask_former.hidden_dim=32", "model.mask_former.nheads=4", "model.mask_former.num_object_queries=8",
        "model.mask_former.dim_feedforward=64", "model.mask_former.dec_layers=2", "model.mask_former.train_num_points=256",
        "model.sem_seg_head.convs_dim=32", "model.sem_seg_head.mask_dim=32", "model.sem_seg_head.transformer_enc_layers=1",
    ],
}  # fmt: skip


def mask2former(*args: str) -> list[str]:
    """`mask2former ...` as a command: the module, so a working tree that is not installed runs it too."""
    return [sys.executable, "-m", "mask2former.cli", *args]


def data_overrides(photos: Path | None, demo: Path, train_split: str = "train") -> tuple[str, list[str], int]:
    """(name, dataset overrides, training images): coco128-seg's photos when given, else the demo set, whose
    `train_split` it trains on."""
    if photos is not None:
        ann, images = photos / "annotations", photos / "images"
        splits = {"train": (ann / "train.json", images), "val": (ann / "val.json", images)}
        name = "coco128-seg"
    else:
        splits = {split: (demo / source / "annotations.json", demo / source / "images")
                  for split, source in (("train", train_split), ("val", "val"))}
        name = "demo" if train_split == "train" else f"demo ({train_split} split trained on)"
    overrides = [f"dataset.{split}.{key}={path}" for split, (ann_path, img_dir) in splits.items()
                 for key, path in (("instance_json", ann_path), ("img_dir", img_dir))]
    images = len(json.loads(splits["train"][0].read_text())["images"])
    return name, overrides, images


def training_log(train_dir: Path) -> tuple[list[float], list[float]]:
    """The run's logged training losses and per-validation mask AP (metrics.csv)."""
    with (train_dir / "logs" / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    return ([float(r["loss"]) for r in rows if r.get("loss")], [float(r["mask_AP"]) for r in rows if r.get("mask_AP")])


def problems_of(losses: list[float], aps: list[float], device_ap: float, cpu_ap: float | None) -> list[str]:
    """What a broken device path looks like in the figures."""
    found = []
    bad = sum(not math.isfinite(v) for v in losses)
    if not losses or bad:
        found.append(f"{bad} of {len(losses)} logged losses are NaN or inf" if losses else "no training loss was logged")
    if not aps or not all(math.isfinite(v) and 0 <= v <= 1 for v in aps):
        found.append(f"mask AP per validation {aps}: not one finite value in [0, 1] each")
    if not (math.isfinite(device_ap) and 0 <= device_ap <= 1):
        found.append(f"the evaluation gave mask AP {device_ap}")
    if cpu_ap is not None and abs(device_ap - cpu_ap) > AP_TOLERANCE:
        found.append(f"mask AP {device_ap:.4f} on the GPU against {cpu_ap:.4f} on the CPU (tolerance {AP_TOLERANCE})")
    return found


def train_mask2former(ctx: Any) -> dict[str, Any]:
    """The part (ctx: bench.gpu_parts.Context)."""
    size = GPU if ctx.gpu else CPU
    data, data_args, images = data_overrides(ctx.photos if size["photos"] else None, ctx.demo, size.get("train_split", "train"))
    out = ctx.work / "train_m2f"
    args = ["-e", str(SPEC), *data_args, *size["overrides"]]
    epochs = size["epochs"]

    _, seconds = ctx.run("train_m2f", "train", mask2former("train", *args, f"results_dir={out}", f"train.num_epochs={epochs}"))
    losses, aps = training_log(out / "train")
    best = out / "train" / BEST_FILE

    def evaluate(where: str, gpus: int) -> float:
        folder = ctx.work / f"train_m2f_eval_{where}"
        ctx.run("train_m2f", f"evaluate-{where}", mask2former(
            "evaluate", *args, f"results_dir={folder}", f"evaluate.checkpoint={best}", f"evaluate.num_gpus={gpus}"))
        return float(json.loads((folder / "evaluate" / "metrics.json").read_text())["mask_AP"])

    device_ap = evaluate("device", 1) if ctx.gpu else (aps[-1] if aps else math.nan)
    cpu_ap = evaluate("cpu", 0) if ctx.gpu else None
    device = "cuda, bf16 autocast" if ctx.gpu else "cpu, fp32"
    rate = images * epochs / seconds
    summary = (f"{data}, {epochs} epoch{'s' if epochs > 1 else ''} on {device}: {rate:.3g} images/s over the run (start-up and validation "
               f"included), last loss {losses[-1] if losses else float('nan'):.3g}, mask AP {device_ap:.4f}")
    if cpu_ap is not None:
        summary += f" (CPU {cpu_ap:.4f})"
    return {
        "problems": problems_of(losses, aps, device_ap, cpu_ap),
        "device": device,
        "data": data,
        "epochs": epochs,
        "train_seconds": seconds,
        "train_images_per_s": rate,
        "losses_logged": len(losses),
        "mask_AP_per_epoch": aps,
        "mask_AP": device_ap,
        "mask_AP_cpu": cpu_ap,
        "summary": summary,
    }
