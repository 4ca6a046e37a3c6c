"""The product's reason to exist: trained from boxes alone, MAL's masks beat the filled boxes.

Both tests run `mal train` then `mal evaluate` as a user does and score the *last* checkpoint (no epoch is
picked on the set that is scored):
- the synthetic demo set with experiments/mal_demo.yaml (random-init ViT) at a smaller budget than the recipe's
  30 epochs, about 2.5 minutes on 2 cores;
- real photos: experiments/mal_coco128.yaml (ImageNet-pretrained EfficientNet-Lite0 from its wheel) on
  coco128-seg train with a smaller budget, scored on coco128-seg val, which it never trained on.
The margins sit well below what was measured (README, "Mask quality"), so a loaded machine or another
seed does not fail them, while a model that only learns the box does.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, data_args, run_cli

pytestmark = pytest.mark.slow

# Measured at this budget on 2026-12-03: 0.702 at the last of 12 epochs (box-fill 0.653, +0.049), 154 s on 2
# cores; the recipe's 30 epochs reach about +0.1 but take twice as long.
DEMO_MARGIN = 0.03
DEMO_EPOCHS = 12
# Measured at this budget on 2026-12-02: 0.641 at the last of 3 epochs (box-fill 0.586, +0.055), 5 min on 2 cores.
REAL_PHOTO_MARGIN = 0.03
REAL_PHOTO_EPOCHS = 3


def _train_then_evaluate(spec: str, args: list[str], folder) -> dict:
    done = run_cli("mal", "train", "-e", spec, *args, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    last = folder / "train" / "mal_model_latest.pth"
    done = run_cli("mal", "evaluate", "-e", spec, *args, f"evaluate.checkpoint={last}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((folder / "evaluate" / "metrics.json").read_text())


def test_mal_trained_on_the_demo_set_beats_box_fill_by_the_margin(demo_data, tmp_path):
    from mal.data import box_fill_miou
    from plumbing.coco import load_coco

    baseline = box_fill_miou(load_coco(str(demo_data / "val" / "annotations.json")))
    spec = str(ROOT / "experiments" / "mal_demo.yaml")
    epochs = DEMO_EPOCHS  # one validation, at the end: only the last epoch is scored
    args = [*data_args(demo_data), f"train.num_epochs={epochs}", f"train.validation_interval={epochs}", f"results_dir={tmp_path}"]
    metrics = _train_then_evaluate(spec, args, tmp_path)
    print(f"demo: box-fill mIoU {baseline:.4f}; MAL mIoU {metrics['mIoU']:.4f}, mask AP {metrics['mask_AP']:.4f}")
    assert metrics["mIoU"] >= baseline + DEMO_MARGIN, f"MAL {metrics['mIoU']:.4f} vs box-fill {baseline:.4f}"


def test_pretrained_mal_beats_box_fill_on_real_photos_it_never_saw(shared_data, tmp_path):
    from mal.data import box_fill_miou
    from plumbing.coco import load_coco

    root = shared_data / "coco128-seg"
    val = root / "annotations" / "val.json"
    baseline = box_fill_miou(load_coco(str(val)))
    args = [
        f"dataset.train_ann_path={root / 'annotations' / 'train.json'}", f"dataset.train_img_dir={root / 'images'}",
        f"dataset.val_ann_path={val}", f"dataset.val_img_dir={root / 'images'}",
        f"train.num_epochs={REAL_PHOTO_EPOCHS}", f"train.validation_interval={REAL_PHOTO_EPOCHS}",
        f"results_dir={tmp_path}",
    ]
    metrics = _train_then_evaluate(str(ROOT / "experiments" / "mal_coco128.yaml"), args, tmp_path)
    print(f"coco128-seg val: box-fill mIoU {baseline:.4f}; MAL mIoU {metrics['mIoU']:.4f}, "
          f"mask AP {metrics['mask_AP']:.4f}")
    assert metrics["mIoU"] >= baseline + REAL_PHOTO_MARGIN, f"MAL {metrics['mIoU']:.4f} vs box-fill {baseline:.4f}"
