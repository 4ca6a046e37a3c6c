"""Benchmark 4, quality: does MAL draw better masks from boxes than the box itself or GrabCut?

MAL is trained with a fixed CPU budget on coco128-seg train (experiments/mal_coco128.yaml; --quick: fewer
epochs at a smaller crop), then its last checkpoint labels the boxes of coco128-seg val and of tiny-coco
(a held-out set: no image overlaps coco128). The filled box and OpenCV GrabCut from the same boxes are
scored by the same code (mal/metrics.py): class-balanced mIoU, its small/medium/large split, mask AP.
--quick scores the first images of each set only (GrabCut on whole images is slow).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, bin_path, console, data_dir, print_table, run_logged, write_result

NAME = "quality"
DATA = ("coco128-seg", "tiny-coco")
SPEC = ROOT / "experiments" / "mal_coco128.yaml"
FULL = {"overrides": [], "images_per_set": None}  # the experiment as written: 20 epochs at 128 px
QUICK = {"overrides": ["train.num_epochs=2", "dataset.crop_size=64", "train.crf_num_iter=20"], "images_per_set": 4}
METRICS = ("mIoU", "mIoU_small", "mIoU_medium", "mIoU_large", "mask_AP", "mask_AP50", "num_instances")


def eval_sets() -> dict[str, tuple[Path, Path]]:
    """Set name -> (annotation json, image folder)."""
    root = data_dir()
    return {
        "coco128-seg val": (root / "coco128-seg" / "annotations" / "val.json", root / "coco128-seg" / "images"),
        "tiny-coco": (root / "tiny-coco" / "annotations.json", root / "tiny-coco" / "images"),
    }


def first_images(ann_path: Path, count: int, out: Path) -> Path:
    """A copy of a COCO file keeping only its first `count` images (by id) and their annotations."""
    raw = json.loads(ann_path.read_text())
    keep = {img["id"] for img in sorted(raw["images"], key=lambda img: img["id"])[:count]}
    subset = {**raw, "images": [i for i in raw["images"] if i["id"] in keep],
              "annotations": [a for a in raw["annotations"] if a["image_id"] in keep]}
    out.write_text(json.dumps(subset))
    return out


def _data_overrides() -> list[str]:
    root = data_dir() / "coco128-seg"
    return [
        f"dataset.train_ann_path={root / 'annotations' / 'train.json'}",
        f"dataset.train_img_dir={root / 'images'}",
        f"dataset.val_ann_path={root / 'annotations' / 'val.json'}",
        f"dataset.val_img_dir={root / 'images'}",
    ]


def train_mal(folder: Path, overrides: list[str]) -> tuple[list[str], float]:
    """`mal train` with the fixed budget; the spec overrides that reproduce it and the training seconds."""
    from mal.spec import load_spec

    epochs = load_spec(SPEC, overrides).train.num_epochs
    # one validation, at the end: the last checkpoint is what is scored, never an epoch picked on val
    train = [*_data_overrides(), *overrides, f"train.validation_interval={epochs}", f"results_dir={folder / 'mal'}"]
    start = time.time()
    run_logged([bin_path("mal"), "train", "-e", str(SPEC), *train], folder / "mal-train.log")
    return train, time.time() - start


def evaluate_mal(train_overrides: list[str], checkpoint: Path, ann: Path, images: Path, out: Path) -> dict[str, Any]:
    from mal.runner import evaluate
    from mal.spec import load_spec

    spec = load_spec(SPEC, [*train_overrides, f"evaluate.checkpoint={checkpoint}", f"dataset.val_ann_path={ann}",
                            f"dataset.val_img_dir={images}", f"results_dir={out}", "dataset.num_workers_per_gpu=0"])
    metrics, _ = evaluate(spec)
    return metrics


def run(quick: bool) -> None:
    from bench.baselines import score_baselines
    from mal.coco import load_coco

    s = QUICK if quick else FULL
    folder = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    console.print("training MAL on coco128-seg train ...")
    train_overrides, train_seconds = train_mal(folder, s["overrides"])
    checkpoint = folder / "mal" / "train" / "mal_model_latest.pth"
    results: dict[str, dict[str, Any]] = {}
    for set_name, (ann, images) in eval_sets().items():
        if s["images_per_set"]:
            ann = first_images(ann, s["images_per_set"], folder / f"{set_name.replace(' ', '-')}.json")
        console.print(f"scoring MAL, box-fill and GrabCut on {set_name} ...")
        mal = evaluate_mal(train_overrides, checkpoint, ann, images, folder / f"eval-{set_name.replace(' ', '-')}")
        baselines = score_baselines(load_coco(str(ann), str(images)), processes=os.cpu_count() or 1)
        results[set_name] = {"MAL": {k: mal.get(k) for k in METRICS}, **baselines}
        results[set_name]["mal_beats_box_fill"] = mal["mIoU"] > baselines["box-fill"]["mIoU"]
        results[set_name]["mal_minus_box_fill_mIoU"] = round(mal["mIoU"] - baselines["box-fill"]["mIoU"], 4)
    shutil.rmtree(folder, ignore_errors=True)

    rows = [
        [set_name, method, *(r[method].get(k) for k in METRICS)]
        for set_name, r in results.items() for method in ("MAL", "box-fill", "grabcut")
    ]
    print_table(f"quality: class-balanced mask mIoU from boxes{' [quick]' if quick else ''}",
                ["set", "method", "mIoU", "small", "medium", "large", "mask AP", "AP50", "instances"], rows)
    for set_name, r in results.items():
        verdict = "[green]beats[/]" if r["mal_beats_box_fill"] else "[red]does NOT beat[/]"
        console.print(f"{set_name}: MAL {verdict} box-fill ({r['mal_minus_box_fill_mIoU']:+.3f} mIoU)")
    settings = {
        "spec": str(SPEC.relative_to(ROOT)), "overrides": s["overrides"], "images_per_set": s["images_per_set"],
        "checkpoint": "last epoch", "train_seconds": round(train_seconds, 1), "init": "random (no pretrained weights)",
        "grabcut": "cv2.grabCut, GC_INIT_WITH_RECT, 5 iterations, whole image",
    }
    write_result(NAME, settings, results, quick)
