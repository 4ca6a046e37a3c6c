"""The product's reason to exist: trained from boxes alone, MAL's masks beat the filled boxes.

CPU-sized MAL (experiments/mal_demo.yaml) on the demo set, with `mal train` then `mal evaluate` as a user
runs them; about 3 minutes on 2 cores.
"""

from __future__ import annotations

import json
import time

from tests.conftest import ROOT, data_args, run_cli

MARGIN = 0.05


def test_mal_trained_on_the_demo_set_beats_box_fill_by_the_margin(demo_data, tmp_path):
    from mal.coco import load_coco
    from mal.data import box_fill_miou

    baseline = box_fill_miou(load_coco(str(demo_data / "val" / "annotations.json")))
    spec = str(ROOT / "experiments" / "mal_demo.yaml")
    args = [*data_args(demo_data), f"results_dir={tmp_path}"]
    started = time.monotonic()
    done = run_cli("mal", "train", "-e", spec, *args, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    done = run_cli("mal", "evaluate", "-e", spec, *args, f"evaluate.checkpoint={tmp_path / 'train' / 'mal_model_best.pth'}")
    assert done.returncode == 0, done.stderr[-3000:]
    minutes = (time.monotonic() - started) / 60
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    print(f"box-fill mIoU {baseline:.4f}; MAL mIoU {metrics['mIoU']:.4f}, mask AP {metrics['mask_AP']:.4f} in {minutes:.1f} min")
    assert minutes <= 10
    assert metrics["mIoU"] >= baseline + MARGIN, f"MAL {metrics['mIoU']:.4f} vs box-fill {baseline:.4f}"
