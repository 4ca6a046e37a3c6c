"""Fault injection: a real study where trials raise, diverge, run out of memory and lose their worker goes on,
records each reason in the leaderboard and in MLflow, retries only the lost worker (from its checkpoint),
and a study where every trial fails ends with exit code 1 and a summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import TINY, data_args, run_cli

pytestmark = pytest.mark.slow  # real studies with injected faults

TESTS = Path(__file__).parent
PLAN = ["raise", "nan", "oom", "worker_loss", "none"]


def _study(tmp: Path, tiny_data: Path, model: str, trials: int, plan: list[str]) -> tuple:
    claims = tmp / "claims"
    claims.mkdir()
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    done = run_cli(
        "automl", "run", "--model", model, "-e", str(TESTS.parent / "experiments" / "mal_demo.yaml"), "--tracking-uri", uri,
        *TINY, *data_args(tiny_data), f"results_dir={tmp / 'study'}", "automl.algorithm=random",
        f"automl.max_trials={trials}", "automl.max_epochs=2", "automl.grace_period=1", "automl.max_concurrent=2", "automl.max_failures=1",
        "automl.experiment_name=faults",
        env={"PYTHONPATH": str(TESTS), "FAULT_DIR": str(claims), "FAULT_PLAN": ",".join(plan)},
    )
    return done, tmp / "study", uri


@pytest.fixture(scope="module")
def faulty_study(tiny_data, tmp_path_factory):
    done, study, uri = _study(tmp_path_factory.mktemp("faults"), tiny_data, "fault_models:FAULTY", len(PLAN), PLAN)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = {r["trial_id"]: r for r in csv.DictReader((study / "leaderboard.csv").open())}
    by_fault = {}
    for trial_id, row in rows.items():
        fault = json.loads((study / "trials" / trial_id / "fault.json").read_text())["fault"]
        starts = json.loads((study / "trials" / trial_id / "attempt_starts.json").read_text())
        by_fault[fault] = {**row, "starts": starts}
    assert sorted(by_fault) == sorted(PLAN)
    return by_fault, study, uri


def _mlflow_run(uri: str, trial_id: str):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("faults")
    [run] = client.search_runs([experiment.experiment_id], f"tags.`automl.trial_id` = '{trial_id}'")
    return client, run


def test_a_raising_trial_fails_with_its_reason_and_the_study_goes_on(faulty_study):
    by_fault, study, uri = faulty_study
    row = by_fault["raise"]
    assert row["status"] == "FAILED" and "injected fault: the data source went away" in row["error"]
    _, run = _mlflow_run(uri, row["trial_id"])
    assert run.info.status == "FAILED" and "the data source went away" in run.data.tags["automl.failure_reason"]
    doc = json.loads((study / "study.json").read_text())
    assert doc["status"] == "completed" and doc["best"]["trial_id"] in {by_fault["none"]["trial_id"], by_fault["worker_loss"]["trial_id"]}


def test_a_nan_loss_stops_the_trial_at_once_and_is_never_reported(faulty_study):
    by_fault, _, uri = faulty_study
    row = by_fault["nan"]
    assert row["status"] == "FAILED" and "non-finite loss at epoch 1" in row["error"]
    assert row["epochs"] == "1"  # the diverged second epoch reported nothing
    client, run = _mlflow_run(uri, row["trial_id"])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "mIoU")] == [1]
    assert row["starts"] == [0], "a diverged trial is not retried: it would only diverge again"


def test_out_of_memory_fails_with_a_hint(faulty_study):
    by_fault, _, uri = faulty_study
    row = by_fault["oom"]
    assert row["status"] == "FAILED"
    assert "out of host memory" in row["error"] and "dataset.crop_size=32" in row["error"] and "train.batch_size=8" in row["error"]
    assert row["starts"] == [0]
    _, run = _mlflow_run(uri, row["trial_id"])
    assert "lower one of them" in run.data.tags["automl.failure_reason"]


def test_a_lost_worker_is_retried_from_its_last_checkpoint(faulty_study):
    by_fault, _, _ = faulty_study
    row = by_fault["worker_loss"]
    assert row["status"] == "COMPLETED" and row["epochs"] == "2" and row["best_mIoU"]
    assert row["starts"] == [0, 1], "the retry resumes after the reported first epoch, not from scratch"


def test_failed_trials_are_never_the_best(faulty_study):
    by_fault, study, _ = faulty_study
    best = json.loads((study / "study.json").read_text())["best"]["trial_id"]
    assert by_fault["none"]["status"] == "COMPLETED"
    assert best not in {by_fault[f]["trial_id"] for f in ("raise", "nan", "oom")}


def test_a_study_where_every_trial_fails_exits_1_with_a_summary(tiny_data, tmp_path):
    done, study, _ = _study(tmp_path, tiny_data, "fault_models:ALWAYS_RAISING", 2, ["none"])
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "every trial failed" in done.stdout and "2 × RuntimeError: injected fault: every trial breaks" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert json.loads((study / "study.json").read_text())["status"] == "failed"
