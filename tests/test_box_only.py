"""Box-only validation data end to end: `mal train`, `mal evaluate` and a whole study tuned on box_score, a
partly masked (gold) set, and the one-line refusal of a mask metric on a set without masks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY, data_args, run_cli


def _val_variant(tiny_data: Path, out: Path, keep_masks: int) -> Path:
    """The tiny validation json with the masks of all but its first `keep_masks` boxes removed."""
    doc = json.loads((tiny_data / "val" / "annotations.json").read_text())
    for ann in doc["annotations"][keep_masks:]:
        ann.pop("segmentation", None)
    path = out / f"val_{keep_masks}_masks.json"
    path.write_text(json.dumps(doc))
    return path


def _args(tiny_data: Path, val: Path, out: Path) -> list[str]:
    """-e SPEC and overrides: the tiny MAL on the tiny set, validated on `val`, writing into `out`."""
    spec = out.parent / f"{out.name}.yaml"
    spec.write_text(f"results_dir: {out}\n")
    return ["-e", str(spec), *TINY, *data_args(tiny_data), f"dataset.val_ann_path={val}"]


@pytest.mark.slow
def test_train_and_evaluate_on_boxes_only_report_box_score_and_no_miou(tiny_data, tmp_path):
    args = _args(tiny_data, _val_variant(tiny_data, tmp_path, 0), tmp_path / "run")
    done = run_cli("mal", "train", *args, "train.num_epochs=2")
    assert done.returncode == 0, done.stderr
    assert "best box_score" in done.stdout
    rows = list(csv.DictReader((tmp_path / "run" / "train" / "logs" / "metrics.csv").open()))
    logged = {k for row in rows for k, v in row.items() if v}
    assert {"box_score", "box_projection", "box_edge"} <= logged and "mIoU" not in logged
    best = tmp_path / "run" / "train" / "mal_model_best.pth"
    assert best.is_file()  # kept by box_score

    done = run_cli("mal", "evaluate", *args, f"evaluate.checkpoint={best}")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert 0 < metrics["box_score"] <= 1 and metrics["num_boxes"] > 0 and metrics["num_instances"] == 0
    assert metrics["mIoU"] is None and metrics["mask_AP"] is None and "no ground-truth masks" in metrics["note"]


@pytest.mark.slow
def test_a_gold_set_reports_miou_on_its_masks_and_box_score_on_every_box(tiny_data, tmp_path):
    args = _args(tiny_data, _val_variant(tiny_data, tmp_path, 3), tmp_path / "run")
    assert run_cli("mal", "train", *args, "train.num_epochs=1").returncode == 0
    best = tmp_path / "run" / "train" / "mal_model_best.pth"
    done = run_cli("mal", "evaluate", *args, f"evaluate.checkpoint={best}")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert metrics["num_instances"] == 3 and metrics["num_boxes"] > 3
    assert 0 <= metrics["mIoU"] <= 1 and 0 < metrics["box_score"] <= 1 and "note" not in metrics


def test_a_study_scored_by_miou_on_boxes_only_stops_in_one_line(tiny_data, tmp_path):
    args = _args(tiny_data, _val_variant(tiny_data, tmp_path, 0), tmp_path / "study")
    done = run_cli("automl", "run", "--model", "mal", *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "automl.metric=mIoU needs ground-truth masks" in done.stderr and "automl.metric=box_score" in done.stderr
    assert not (tmp_path / "study" / "study.json").exists()


@pytest.mark.slow
def test_a_study_tuned_on_box_score_promotes_a_model_from_boxes_alone(tiny_data, tmp_path):
    study = tmp_path / "study"
    args = [
        *_args(tiny_data, _val_variant(tiny_data, tmp_path, 0), study), "automl.metric=box_score", "automl.max_trials=2",
        "automl.max_epochs=2", "automl.grace_period=1", "automl.reduction_factor=2", "automl.cpus_per_trial=1",
        "automl.hyperparameters=[train.lr]", "automl.range_overrides={train.lr: {low: 1.0e-5, high: 1.0e-3}}",
    ]
    done = run_cli("automl", "run", "--model", "mal", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((study / "study.json").read_text())
    assert doc["status"] == "completed" and doc["settings"]["metric"] == "box_score"
    history = [h for record in doc["records"] for h in record["history"]]
    assert history and all({"epoch", "box_score", "box_projection", "box_edge"} <= set(h) and "mIoU" not in h for h in history)
    final = json.loads((study / "best" / "metrics.json").read_text())
    assert final["box_score"] > 0 and final["mIoU"] is None
    assert (study / "best" / "model.pth").is_file()
