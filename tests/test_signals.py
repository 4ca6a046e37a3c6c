"""SIGINT and SIGTERM: the handler's rules in-process, then real signals to the real `mal train` and `automl run`
(one line, exit 130/143, the checkpoint or study.json left for the rerun), and the rerun or `automl resume`
carrying on without repeating anything."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from plumbing import signals
from tests.conftest import BIN, ROOT, TINY, data_args, run_cli

DEMO = str(ROOT / "experiments" / "mal_demo.yaml")
FINAL = {"COMPLETED", "STOPPED", "FAILED"}


def test_a_signal_outside_a_clean_stop_point_raises_at_once_with_its_exit_code():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(signals.Interrupted) as stopped, signals.handled():
        signal.raise_signal(signal.SIGTERM)
    assert stopped.value.exit_code == 143 and str(stopped.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_under_deferred_the_first_signal_is_recorded_and_a_second_stops_at_once():
    with signals.handled():
        with signals.deferred():
            signal.raise_signal(signal.SIGINT)
            assert signals.requested() == signal.SIGINT  # recorded, nothing raised: the code stops when it can
            with pytest.raises(signals.Interrupted) as again:
                signal.raise_signal(signal.SIGTERM)
        assert again.value.exit_code == 130  # reported as the first signal
        with pytest.raises(signals.Interrupted):  # a clean stop point entered after a signal stops at once
            with signals.deferred():
                pass
    assert signals.requested() is None  # no command handles signals any more


def _popen(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def _signal_when(proc: subprocess.Popen, ready: Callable[[], bool], signum: int, timeout: float = 600) -> tuple[str, str]:
    """Send `signum` to the process alone (as a container runtime does) once `ready()`; its output at exit."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"it ended (exit {proc.returncode}) before the signal: {err[-2000:]}")
            assert time.monotonic() < deadline, "the moment to send the signal never came"
            time.sleep(0.1)
        proc.send_signal(signum)
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _assert_one_line_stop(proc: subprocess.Popen, err: str, signum: int, says: str) -> None:
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err[-3000:]
    assert "Traceback" not in err and "SIGTERM received" not in err, err[-3000:]  # no Python or C++ stack
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {name}: ") and says in last, last


def _step(checkpoint: Path) -> int:
    return torch.load(checkpoint, weights_only=True)["global_step"]


@pytest.mark.slow
# the rerun does not depend on which signal stopped the run: it is checked once, to keep the cost down
@pytest.mark.parametrize(("signum", "rerun"), [(signal.SIGINT, False), (signal.SIGTERM, True)], ids=["SIGINT", "SIGTERM"])
def test_mal_train_stops_at_a_step_with_a_checkpoint_and_the_same_command_resumes(signum, rerun, tiny_data, tmp_path):
    epochs, steps_per_epoch = 3, 3  # TINY on tiny_data: 3 batches of 8 crops per epoch
    args = [str(BIN / "mal"), "train", "-e", DEMO, *TINY, *data_args(tiny_data), f"results_dir={tmp_path}", f"train.num_epochs={epochs}"]
    train_dir = tmp_path / "train"
    latest, first_epoch = train_dir / "mal_model_latest.pth", train_dir / "model_epoch_000.pth"
    proc = _popen(args)
    out, err = _signal_when(proc, latest.is_file, signum)  # the first epoch has ended: training is under way

    _assert_one_line_stop(proc, err, signum, f"saved {latest}")
    stopped_at = _step(latest)
    assert steps_per_epoch < stopped_at < epochs * steps_per_epoch  # after a step of a later epoch, before the end
    assert not list(train_dir.glob(".*.tmp"))  # the checkpoint was written whole (temp file + rename)
    if not rerun:
        return
    first_epoch_written = first_epoch.stat().st_mtime_ns
    again = run_cli("mal", *args[1:], cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _step(latest) == epochs * steps_per_epoch  # from the saved step on: no step trained twice, none skipped
    assert first_epoch.stat().st_mtime_ns == first_epoch_written  # the first epoch was not trained again


def _records(study: Path) -> list[dict]:
    try:
        return json.loads((study / "study.json").read_text())["records"]
    except (OSError, ValueError, KeyError):
        return []  # not written yet, or caught between temp file and rename


@pytest.mark.slow
def test_automl_run_stops_on_sigterm_marks_the_study_interrupted_and_resume_finishes_it(tiny_data, tmp_path):
    study, uri = tmp_path / "study", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [
        str(BIN / "automl"), "run", "-e", DEMO, "--tracking-uri", uri, *TINY, *data_args(tiny_data), f"results_dir={study}",
        "automl.max_trials=2", "automl.max_epochs=2", "automl.grace_period=2", "automl.max_concurrent=1",
    ]

    def second_trial_running() -> bool:
        records = _records(study)
        return any(r["status"] in FINAL for r in records) and any(r["status"] == "RUNNING" for r in records)

    proc = _popen(args)
    out, err = _signal_when(proc, second_trial_running, signal.SIGTERM)
    _assert_one_line_stop(proc, err, signal.SIGTERM, f"automl resume {study}")
    before = json.loads((study / "study.json").read_text())
    assert before["status"] == "interrupted"
    finished = {r["trial_id"]: r for r in before["records"] if r["status"] in FINAL}
    assert len(finished) == 1 and all(r["status"] == "PENDING" for r in before["records"] if r["status"] not in FINAL)
    stamps = {t: (study / "trials" / t / "train" / "mal_model_latest.pth").stat().st_mtime_ns for t in finished}

    done = run_cli("automl", "resume", str(study), cwd=ROOT, env={"MLFLOW_TRACKING_URI": uri})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = list(csv.DictReader((study / "leaderboard.csv").open()))
    assert sorted(r["trial_id"] for r in rows) == sorted({r["trial_id"] for r in rows}) and len(rows) == 2
    assert all(r["status"] in FINAL for r in rows)
    for trial_id, old in finished.items():  # the finished trial is kept as it was, not trained again
        row = next(r for r in rows if r["trial_id"] == trial_id)
        assert row["status"] == old["status"] and int(row["epochs"]) == old["epochs"]
        assert (study / "trials" / trial_id / "train" / "mal_model_latest.pth").stat().st_mtime_ns == stamps[trial_id]
    assert json.loads((study / "study.json").read_text())["status"] == "completed"
