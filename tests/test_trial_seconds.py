"""A trial's recorded seconds count the time it ran, not the time the driver was down before a resume."""

from __future__ import annotations

import io
import pickle
import types

from rich.console import Console

from automl import recorder as recorder_module
from automl.recorder import StudyRecorder
from automl.registry import get_model
from automl.space import SearchSpace
from automl.state import StudyState
from tests.test_stall import SETTINGS


def test_seconds_add_up_the_runs_of_a_trial_across_a_driver_restart(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(recorder_module.time, "time", lambda: now[0])
    space = SearchSpace("mal", (), {}, {})
    state = StudyState(tmp_path, SETTINGS, space)
    recorder = StudyRecorder(state, Console(file=io.StringIO()), get_model("mal"), {})
    trial = types.SimpleNamespace(trial_id="t0", config={}, status="RUNNING")
    recorder.on_trial_start(0, [], trial)
    now[0] = 110.0
    recorder.on_trial_result(0, [], trial, {"epoch": 1, "mIoU": 0.5})
    assert state.trials["t0"].seconds == 10.0

    # the driver dies; an hour later `automl resume` restores Tune's pickled callbacks and the study state
    now[0] = 3710.0
    resumed = pickle.loads(pickle.dumps(recorder))
    resumed.state = StudyState.load(tmp_path, space)
    resumed.on_trial_start(0, [], trial)
    now[0] = 3715.0
    resumed.on_trial_result(0, [], trial, {"epoch": 2, "mIoU": 0.6})
    assert resumed.state.trials["t0"].seconds == 15.0
    now[0] = 3717.0
    resumed.on_trial_complete(0, [], trial)
    assert resumed.state.trials["t0"].seconds == 17.0
    assert resumed.state.trials["t0"].started == 100.0  # when it first started stays as it was
