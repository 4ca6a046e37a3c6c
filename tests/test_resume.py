"""`automl resume`: a study whose driver is SIGKILLed after some trials finished carries on. Finished trials are
neither lost nor re-run, the leaderboard ends with every trial exactly once, and the MLflow runs carry on."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import BIN, ROOT, TINY, data_args, run_cli

pytestmark = pytest.mark.slow  # a real study, killed and resumed

FINAL = {"COMPLETED", "STOPPED", "FAILED"}
TRIALS = 4


def _records(study: Path) -> list[dict]:
    try:
        return json.loads((study / "study.json").read_text()).get("records", [])
    except (OSError, json.JSONDecodeError):
        return []


def _kill_after_two_finished(cmd: list[str], study: Path, timeout: float = 400) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            finished = [r for r in _records(study) if r["status"] in FINAL]
            if len(finished) >= 2:
                break
            assert proc.poll() is None, "the study ended before it could be killed"
            time.sleep(0.5)
        else:
            raise AssertionError("two trials did not finish in time")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        proc.wait()


def test_a_killed_study_resumes_with_every_trial_once(tiny_data, tmp_path):
    study, uri = tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        "-e", str(ROOT / "experiments" / "mal_demo.yaml"), "--tracking-uri", uri, *TINY, *data_args(tiny_data),
        f"results_dir={study}", f"automl.max_trials={TRIALS}", "automl.max_epochs=3", "automl.grace_period=1",
        "automl.reduction_factor=2", "automl.max_concurrent=2", "automl.experiment_name=resume-test",
    ]
    _kill_after_two_finished([str(BIN / "automl"), "run", *args], study)
    before = json.loads((study / "study.json").read_text())
    assert before["status"] == "running"
    finished = {r["trial_id"]: r for r in before["records"] if r["status"] in FINAL}
    stamps = {t: (study / "trials" / t / "train" / "mal_model_latest.pth").stat().st_mtime_ns for t in finished}

    again = run_cli("automl", "run", *args)
    assert again.returncode == 2 and "automl resume" in again.stderr

    done = run_cli("automl", "resume", str(study), cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = list(csv.DictReader((study / "leaderboard.csv").open()))
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)) == TRIALS
    assert all(r["status"] in FINAL for r in rows)
    for row in rows:  # what had finished is kept as it was, not trained again
        if row["trial_id"] in finished:
            old = finished[row["trial_id"]]
            assert row["status"] == old["status"] and int(row["epochs"]) == old["epochs"]
            assert float(row["best_mIoU"]) == round(old["best_metric"], 6)
            latest = study / "trials" / row["trial_id"] / "train" / "mal_model_latest.pth"
            assert latest.stat().st_mtime_ns == stamps[row["trial_id"]]
    after = json.loads((study / "study.json").read_text())
    assert after["status"] == "completed" and (study / "best" / "model.pth").is_file()
    assert after["mlflow_run_id"] == before["mlflow_run_id"]

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("resume-test")
    runs = client.search_runs([experiment.experiment_id], "tags.`automl.kind` = 'trial'")
    live = [r for r in runs if r.data.tags.get("automl.status") != "ABANDONED"]
    assert sorted(r.data.tags["automl.trial_id"] for r in live) == sorted(ids)
    assert all(r.data.tags["mlflow.parentRunId"] == before["mlflow_run_id"] for r in runs)
    studies = client.search_runs([experiment.experiment_id], "tags.`automl.kind` = 'study'")
    assert len(studies) == 1 and studies[0].info.status == "FINISHED"
