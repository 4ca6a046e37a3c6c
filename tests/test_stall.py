"""A stalled scheduler (trials left PAUSED with nothing running, pending or left to sample) ends the study
instead of spinning forever: the paused trials end at their reported epochs and the study says so."""

from __future__ import annotations

import io
import json
import sys
import types

import pytest
from rich.console import Console

from automl.cli import main
from automl.recorder import StudyRecorder
from automl.registry import get_model
from automl.space import SearchSpace
from automl.stall import StallGuard, stalled
from automl.state import StudyState

SETTINGS = {
    "model": "mal", "algorithm": "hyperband", "metric": "mIoU", "mode": "max", "max_trials": 3, "max_epochs": 8,
    "grace_period": 1, "max_concurrent": 2, "max_failures": 0, "workers_per_trial": 1, "cpus_per_trial": 1,
    "gpus_per_trial": 0,
}


def _trials(*statuses: str) -> list:
    return [types.SimpleNamespace(trial_id=f"t{i}", config={}, status=s) for i, s in enumerate(statuses)]


def test_stalled_means_paused_trials_and_nothing_that_could_report():
    assert stalled(_trials("TERMINATED", "TERMINATED", "PAUSED"), 3)
    assert not stalled(_trials("TERMINATED", "RUNNING", "PAUSED"), 3)  # a running trial will report
    assert not stalled(_trials("TERMINATED", "PENDING", "PAUSED"), 3)  # a pending one will start
    assert not stalled(_trials("TERMINATED", "PAUSED"), 3)  # a third trial is still to be sampled
    assert not stalled(_trials("TERMINATED", "TERMINATED", "ERROR"), 3)  # finished: Tune ends by itself


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_guard_fires_once_after_the_stall_has_held():
    clock, handed, stops = Clock(), [], []
    guard = StallGuard(3, handed.append, seconds=30.0, clock=clock, stop=lambda: stops.append(1))
    stuck = _trials("TERMINATED", "TERMINATED", "PAUSED")
    guard.on_step_end(0, stuck)
    clock.now = 29.0
    guard.on_step_end(1, stuck)
    assert handed == [] and stops == []
    clock.now = 31.0
    guard.on_step_end(2, _trials("TERMINATED", "RUNNING", "PAUSED"))  # progress resets the clock
    clock.now = 45.0
    guard.on_step_end(3, stuck)
    assert handed == [] and stops == []
    clock.now = 76.0
    guard.on_step_end(4, stuck)
    guard.on_step_end(5, stuck)
    assert [[t.trial_id for t in paused] for paused in handed] == [["t2"]] and stops == [1]


def test_paused_trials_end_at_their_epochs_and_the_study_notes_it(tmp_path, monkeypatch, capsys):
    state = StudyState(tmp_path, SETTINGS, SearchSpace("mal", (), {}, {}))
    recorder = StudyRecorder(state, Console(file=io.StringIO()), get_model("mal"), {})
    full, short = _trials("PAUSED", "PAUSED")
    recorder.on_trial_start(0, [], full)
    recorder.on_trial_start(0, [], short)
    recorder.on_trial_result(0, [], full, {"epoch": 8, "mIoU": 0.6})
    recorder.on_trial_result(0, [], short, {"epoch": 2, "mIoU": 0.5})
    recorder.end_stalled([full, short])
    assert state.trials["t0"].status == "COMPLETED" and state.trials["t1"].status == "STOPPED"
    doc = json.loads((tmp_path / "study.json").read_text())
    assert doc["notes"] == ["the scheduler left t0, t1 paused with nothing left to run; ended at their reported epochs"]
    assert StudyState.load(tmp_path, state.space).notes == doc["notes"]
    assert state.best_so_far().trial_id == "t0"
    monkeypatch.setattr(sys, "argv", ["automl", "status", str(tmp_path)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code in (0, None)
    assert "note: the scheduler left t0, t1 paused" in " ".join(capsys.readouterr().out.split())
