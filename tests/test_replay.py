"""The replay benchmark's pieces: curves read from a study, the surrogate on a landscape we know, the
efficiency arithmetic, and a replay study through the real engine."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.hpo_replay import summarise_set, trials_for
from bench.replay.curves import curves_from_study, load_curves
from bench.replay.surrogate import fit_surrogate
from tests.conftest import ROOT

SPACE = {
    "model": "mal",
    "parameters": {
        "train.lr": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
        "train.loss_mil_weight": {"type": "float", "low": 0.0, "high": 2.0},
    },
    "base": {}, "warm_start": {}, "spec_values": {},
}


def _landscape(lr: float, weight: float, epoch: int) -> float:
    """A known curve family: best near lr 1e-4 and weight 1, rising with the epochs."""
    peak = 0.7 - 0.08 * (math.log10(lr) + 4) ** 2 - 0.05 * (weight - 1) ** 2
    return peak * (1 - math.exp(-epoch / 2))


def _study(configs: int, epochs: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(configs):
        lr, weight = float(10 ** rng.uniform(-5, -3)), float(rng.uniform(0, 2))
        history = [{"epoch": e, "mIoU": _landscape(lr, weight, e) + float(rng.normal(0, 0.005))} for e in range(1, epochs + 1)]
        records.append({"trial_id": f"t{i}", "params": {"train.lr": lr, "train.loss_mil_weight": weight},
                        "status": "COMPLETED", "history": history})
    settings = {"metric": "mIoU", "mode": "max", "max_epochs": epochs, "grace_period": 1, "reduction_factor": 2}
    return {"settings": settings, "search_space": SPACE, "records": records}


def test_curves_from_a_study_keep_every_epoch_and_mark_missing_ones(tmp_path):
    study = _study(3, 4)
    study["records"][1]["history"] = [study["records"][1]["history"][0], study["records"][1]["history"][2]]  # epoch 2 lost
    study["records"][2]["history"] = []  # never validated: nothing to learn from
    doc = curves_from_study(study, "toy", {"spec": "experiments/x.yaml", "overrides": []})
    assert [c["trial_id"] for c in doc["configs"]] == ["t0", "t1"]
    assert len(doc["configs"][0]["curve"]) == 4
    assert doc["configs"][1]["curve"][1] is None and len(doc["configs"][1]["curve"]) == 3
    assert doc["schedule"] == {"grace_period": 1, "reduction_factor": 2}
    path = tmp_path / "curves.json"
    path.write_text(json.dumps(doc))
    curves = load_curves(path)
    assert len(curves.points()) == 4 + 2  # the missing epoch is not a point
    assert curves.best() == max(v for *_, v in curves.points())


def test_the_surrogate_predicts_configurations_it_never_saw(tmp_path):
    path = tmp_path / "curves.json"
    path.write_text(json.dumps(curves_from_study(_study(36, 6), "toy", {"spec": "x", "overrides": []})))
    surrogate, quality = fit_surrogate(load_curves(path))
    assert set(quality) == {"random_forest", "gaussian_process"}
    held_out = quality[surrogate.kind]
    assert max(q["spearman_last_epoch"] for q in quality.values()) == held_out["spearman_last_epoch"]
    assert held_out["r2"] > 0.9 and held_out["spearman_last_epoch"] > 0.8, held_out
    good, bad = {"train.lr": 1e-4, "train.loss_mil_weight": 1.0}, {"train.lr": 1e-5, "train.loss_mil_weight": 0.0}
    assert surrogate.predict(good, 6) == pytest.approx(_landscape(1e-4, 1.0, 6), abs=0.05)
    assert surrogate.predict(good, 6) > surrogate.predict(bad, 6)
    assert surrogate.curve(good)[0] < surrogate.curve(good)[-1]  # it rises with the epochs


def test_the_surrogate_kept_is_the_one_that_ranks_configurations_not_the_one_nearest_the_mean(tmp_path, monkeypatch):
    from bench.replay import surrogate as surrogate_module

    path = tmp_path / "curves.json"
    path.write_text(json.dumps(curves_from_study(_study(12, 3), "toy", {"spec": "x", "overrides": []})))
    figures = {  # the demo's held-out figures of 2026-12-06: the GP nearer in RMSE, the forest right in order
        "random_forest": {"rmse": 0.0519, "spearman_last_epoch": 0.5449},
        "gaussian_process": {"rmse": 0.0483, "spearman_last_epoch": -0.1436},
    }
    monkeypatch.setattr(surrogate_module, "held_out_quality", lambda curves, kind, seed=0: figures[kind])
    assert fit_surrogate(load_curves(path))[0].kind == "random_forest"
    figures["random_forest"]["spearman_last_epoch"] = -0.1436  # a tie in order: the lower RMSE
    assert fit_surrogate(load_curves(path))[0].kind == "gaussian_process"
    figures["gaussian_process"]["spearman_last_epoch"] = float("nan")  # a flat prediction ranks nothing
    assert fit_surrogate(load_curves(path))[0].kind == "random_forest"


def test_efficiency_is_read_against_random_search_of_the_same_seed():
    curves = {
        "random": [[0.1, 0.3, 0.5, 0.5], [0.2, 0.2, 0.4, 0.6]],  # its finals: 0.5 at epoch 3, 0.6 at epoch 4
        "asha": [[0.5, 0.5, 0.5, 0.7], [0.1, 0.1, 0.1, 0.1]],  # seed 0 at 1/3 of random's epochs, seed 1 never
    }
    summary = summarise_set(curves, budget=4, best_possible=0.8, default="asha")
    assert summary["asha"]["epochs_to_random_best_per_seed"] == [pytest.approx(1 / 3, abs=1e-3), None]
    assert summary["asha"]["epochs_to_random_best"] is None  # the median seed never gets there
    assert summary["random"]["epochs_to_random_best"] == 1.0
    assert summary["asha"]["final_regret_mean"] == pytest.approx(((0.8 - 0.7) + (0.8 - 0.1)) / 2)
    low, high = summary["asha"]["final_regret_interval95"]
    assert low <= summary["asha"]["final_regret_mean"] <= high
    assert summary["default_meets_goal"] is False
    assert trials_for("random", 16, 8, 2, 2) == 16 and trials_for("asha", 16, 8, 2, 2) > 16


def test_replay_flag_goes_with_hpo_efficiency_only():
    done = subprocess.run([sys.executable, "-m", "bench", "--replay", "quality"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "--replay goes with hpo_efficiency" in done.stderr


@pytest.mark.slow
def test_a_replay_study_runs_on_the_real_engine_and_promotes_the_surrogates_answer(tmp_path):
    from bench.replay.model import surrogate

    curves = surrogate("coco128-seg").curves
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "automl.cli", "run", "--model", "bench.replay.model:COCO128", "-e", str(ROOT / curves.doc["recipe"]["spec"]),
         *curves.doc["recipe"]["overrides"], "automl.algorithm=asha", "automl.max_trials=4", "automl.warm_start=false",
         "automl.max_epochs=4", "automl.grace_period=1", "automl.reduction_factor=2", "automl.seed=3",
         f"results_dir={tmp_path / 'study'}", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert study["status"] == "completed" and len(study["records"]) == 4
    best = study["best"]
    replayed = [h["mIoU"] for r in study["records"] if r["trial_id"] == best["trial_id"] for h in r["history"]]
    epoch = int(np.argmax(replayed)) + 1
    answer = surrogate("coco128-seg").predict(best["params"], epoch)
    assert replayed[epoch - 1] == pytest.approx(answer, abs=1e-6)  # what the trial reported is the surrogate's
    assert best["final_evaluation"]["mIoU"] == pytest.approx(answer, abs=1e-6)  # and promotion evaluated the same
