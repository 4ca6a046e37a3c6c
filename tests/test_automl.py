"""The AutoML engine: fidelity-correct searching, best-at-largest-budget, every algorithm, the study
contract, and the policy switch."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from PIL import Image
from rich.console import Console

from automl.algorithms import ALGORITHMS, FidelityAwareOptunaSearch, StudySettings, build
from automl.registry import get_model
from automl.space import SearchSpace, load_space_file, resolve_space
from automl.state import TrialRecord, select_best
from automl.study import run_study
from mal.data import train_instances
from mal.spec import load_spec
from plumbing.coco import load_coco
from tests.conftest import TINY, data_args, run_cli

STUDY = ["automl.max_epochs=2", "automl.grace_period=1", "automl.reduction_factor=2", "automl.cpus_per_trial=1"]


def _space(spec, names):
    model = get_model("mal")
    return resolve_space(model, load_space_file(model.search_space), spec, names, {"train.lr": {"low": 1.0e-5, "high": 1.0e-3}} if "train.lr" in names else {})


def test_early_stopped_trial_is_pruned_not_complete():
    spec = load_spec(None, [])
    space = _space(spec, ["train.lr"])
    search = FidelityAwareOptunaSearch(space=space.suggest, metric="mIoU", mode="max", max_budget=4)
    for tid in ("low", "full"):
        assert search.suggest(tid) is not None
    search.on_trial_result("low", {"mIoU": 0.9, "epoch": 1, "training_iteration": 1})
    search.on_trial_complete("low", {"mIoU": 0.9, "epoch": 1})
    for epoch in range(1, 5):
        search.on_trial_result("full", {"mIoU": 0.5, "epoch": epoch, "training_iteration": epoch})
    search.on_trial_complete("full", {"mIoU": 0.5, "epoch": 4})
    trials = {t.number: t for t in search._ot_study.trials}
    assert trials[0].state == optuna.trial.TrialState.PRUNED and trials[0].intermediate_values == {1: 0.9}
    assert trials[1].state == optuna.trial.TrialState.COMPLETE and trials[1].value == 0.5
    assert search._ot_study.best_trial.number == 1  # the low-rung 0.9 never counts as a finished result


def test_best_is_judged_at_the_largest_budget():
    records = [
        TrialRecord("a", {}, "STOPPED", best_metric=0.9, epochs=1),
        TrialRecord("b", {}, "COMPLETED", best_metric=0.6, epochs=4),
        TrialRecord("c", {}, "COMPLETED", best_metric=0.7, epochs=4),
        TrialRecord("d", {}, "FAILED", best_metric=None, epochs=4),
    ]
    assert select_best(records, "max").trial_id == "c"
    assert select_best(records, "min").trial_id == "b"
    assert select_best([TrialRecord("x", {}, "FAILED")], "max") is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_builds(algorithm):
    spec = load_spec(None, [])
    names = ["train.crf_kernel_size"] if algorithm == "grid" else ["train.lr", "train.loss_crf_weight"]
    searcher, scheduler = build(algorithm, _space(spec, names), StudySettings("mIoU", "max", 4, 4, 1, 2, 0))
    assert searcher is not None and scheduler is not None


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "asha"])
def test_every_algorithm_runs_two_trials(algorithm, tiny_data, tmp_path):
    names = ["train.crf_kernel_size"] if algorithm == "grid" else ["train.lr", "train.loss_crf_weight"]
    spec = load_spec(None, [*TINY, *data_args(tiny_data), f"results_dir={tmp_path}", *STUDY, "automl.max_trials=2", f"automl.algorithm={algorithm}"])
    result = run_study(get_model("mal"), spec, _space(spec, names), tmp_path, Console(file=io.StringIO()))
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    assert len(rows) == 2, rows
    assert all(r["status"] in ("COMPLETED", "STOPPED") for r in rows), rows
    assert result.best is not None and (tmp_path / "best" / "model.pth").is_file()


@pytest.mark.slow
def test_asha_study_end_to_end_and_best_reproduces(tiny_data, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"results_dir: {tmp_path / 'study'}\n")
    args = [*TINY, *data_args(tiny_data), *STUDY, "automl.max_trials=4", "automl.hyperparameters=[train.lr,train.loss_mil_weight]",
            "automl.range_overrides={train.lr: {low: 1.0e-5, high: 1.0e-3}}"]
    done = run_cli("automl", "run", "--model", "mal", "-e", str(spec_file), *args)
    assert done.returncode == 0, done.stdout + done.stderr
    study = tmp_path / "study"
    doc = json.loads((study / "study.json").read_text())
    assert doc["status"] == "completed" and doc["settings"]["algorithm"] == "asha"
    # every validation of every trial keeps both scores: the mask one and the box-only one
    assert all({"epoch", "mIoU", "box_score"} <= set(h) for r in doc["records"] for h in r["history"])
    # the spec's own values ran (warm start), and the study says what it gained over them and over the filled box
    gain = doc["gain"]
    spec_values = SearchSpace.from_dict(doc["search_space"]).first_points()["your spec's values"]
    spec_trial = next(r for r in doc["records"] if r["trial_id"] == gain["default_trial"])
    assert spec_trial["params"] == pytest.approx(spec_values)
    assert gain["default"] == pytest.approx(max(h["mIoU"] for h in spec_trial["history"]))
    assert gain["gain"] == pytest.approx(gain["best"] - gain["default"]) and gain["gain"] >= 0
    assert 0.3 < gain["box_fill"] < 0.9
    assert " ".join(done.stdout.split()).endswith(
        f"{gain['gain']:+.3f} mIoU over your spec's values: {gain['default']:.3f} → {gain['best']:.3f} within "
        f"{gain['budget']} epochs ({gain['default_trial']}); box_fill {gain['box_fill']:.3f}"
    )
    rows = list(csv.DictReader((study / "leaderboard.csv").open()))
    assert len(rows) == 4 and {"train.lr", "train.loss_mil_weight", "best_mIoU", "epochs", "seconds"} <= set(rows[0])
    assert len({r["train.lr"] for r in rows}) == 4
    best = study / "best"
    recorded = json.loads((best / "metrics.json").read_text())
    done = run_cli("mal", "evaluate", "-e", str(best / "spec.yaml"), f"evaluate.checkpoint={best / 'model.pth'}", f"results_dir={tmp_path / 'again'}")
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "again" / "evaluate" / "metrics.json").read_text())
    assert again["mIoU"] == pytest.approx(recorded["mIoU"], abs=1e-6)
    assert doc["best"]["trial_id"] in {r["trial_id"] for r in rows}
    # the promoted checkpoint is the one that scored the trial's best validation, last epoch included
    best_row = next(r for r in rows if r["trial_id"] == doc["best"]["trial_id"])
    assert recorded["mIoU"] == pytest.approx(float(best_row["best_mIoU"]), abs=1e-5)
    status = run_cli("automl", "status", str(study))
    assert status.returncode == 0 and doc["best"]["trial_id"] in status.stdout
    again_run = run_cli("automl", "run", "-e", str(spec_file), *args)
    assert again_run.returncode == 2 and "automl resume" in again_run.stderr  # never overwrites a study

    report = run_cli("automl", "report", str(study))
    assert report.returncode == 0, report.stderr
    names = {"optimization_history", "parallel_coordinates", "param_importances", "learning_curves"}
    assert {Path(line).stem for line in report.stdout.split()} == names
    for name in names:
        pixels = np.asarray(Image.open(study / "report" / f"{name}.png").convert("L"), np.float32)
        assert pixels.shape[0] > 300 and pixels.std() > 10, f"{name}.png looks blank"


@pytest.mark.slow
def test_policy_off_and_auto_without_a_space_train_once(tiny_data, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"results_dir: {tmp_path / 'off'}\n")
    base = [*TINY, *data_args(tiny_data), "train.num_epochs=1"]
    done = run_cli("automl", "off", "--model", "mal", "-e", str(spec_file), *base)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "off" / "train" / "mal_model_latest.pth").is_file() and not (tmp_path / "off" / "study.json").exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text("parameters: [\n")
    on = run_cli("automl", "run", "-e", str(spec_file), *base, "automl.policy=on", f"automl.search_space={broken}")
    assert on.returncode == 2 and on.stderr.startswith("error: ")


def test_bad_search_space_selection_exits_2_with_one_line(tiny_data, tmp_path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"results_dir: {tmp_path}\n")
    done = run_cli("automl", "run", "-e", str(spec_file), *TINY, *data_args(tiny_data), "automl.hyperparameters=[train.lrr]")
    assert done.returncode == 2
    assert "train.lrr" in done.stderr and "did you mean 'train.lr'" in done.stderr and done.stderr.count("\n") == 1
    assert not (Path(tmp_path) / "study.json").exists()


@pytest.mark.slow
def test_a_two_worker_ddp_trial_reports_miou(tiny_data, tmp_path):
    """workers_per_trial=2: each trial is a Ray Train TorchTrainer of 2 gloo workers running Lightning DDP."""
    spec = load_spec(None, [
        *TINY, *data_args(tiny_data), f"results_dir={tmp_path}", *STUDY, "automl.max_trials=1",
        "automl.algorithm=random", "automl.workers_per_trial=2", "automl.cpus_per_trial=2",
    ])
    result = run_study(get_model("mal"), spec, _space(spec, ["train.lr"]), tmp_path, Console(file=io.StringIO()))
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    assert [r["status"] for r in rows] == ["COMPLETED"], rows
    assert int(rows[0]["epochs"]) == 2 and 0 < float(rows[0]["best_mIoU"]) <= 1
    assert json.loads((tmp_path / "study.json").read_text())["settings"]["workers_per_trial"] == 2
    latest = torch.load(tmp_path / "trials" / rows[0]["trial_id"] / "train" / "mal_model_latest.pth", weights_only=True)
    boxes, _ = train_instances(load_coco(str(tiny_data / "train" / "annotations.json")), 64, 1e10)
    assert latest["global_step"] == 2 * math.ceil(math.ceil(len(boxes) / 2) / 8)  # each worker trained half
    assert result.best is not None and (tmp_path / "best" / "model.pth").is_file()
