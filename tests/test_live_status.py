"""The live status block: what it says about a study between trial events, and that it shows only on a terminal."""

from __future__ import annotations

import io
import time

from rich.console import Console

from automl.live_status import LiveStatus, status_lines
from automl.space import SearchSpace
from automl.state import StudyState, TrialRecord

SETTINGS = {"metric": "mIoU", "mode": "max", "max_epochs": 30, "max_trials": 6}


def _state(tmp_path) -> StudyState:
    state = StudyState(tmp_path, SETTINGS, SearchSpace("t", (), {}, {}))
    state.started = 1000.0
    state.trials["a"] = TrialRecord("a", {}, "COMPLETED", 0.71, 30, [{"epoch": 30, "mIoU": 0.71}], started=1000.0)
    state.trials["b"] = TrialRecord("b", {}, "STOPPED", 0.62, 6, [{"epoch": 6, "mIoU": 0.62}], started=1010.0)
    state.trials["c"] = TrialRecord("c", {}, "RUNNING", 0.66, 4, [{"epoch": 4, "mIoU": 0.66}], started=1200.0)
    state.trials["d"] = TrialRecord("d", {}, "RUNNING", started=1290.0)  # no validation yet
    return state


def test_the_status_names_counts_best_eta_and_every_running_trial(tmp_path):
    lines = status_lines(_state(tmp_path), 6, now=1300.0)
    # 300 s for 2 finished trials: 4 more at that pace is 600 s
    assert lines[0] == "2/6 done · 2 running · 2 pending · best mIoU 0.7100 (a) · 5:00 elapsed · ETA 10:00"
    assert lines[1:] == ["  c  epoch 4/30  mIoU 0.6600  running 1:40", "  d  epoch 0/30  mIoU —  running 0:10"]


def test_the_block_is_drawn_only_on_a_terminal(tmp_path):
    piped = LiveStatus(Console(file=io.StringIO()), _state(tmp_path), 6)
    piped.start()
    assert piped.live is None
    piped.stop()

    screen = io.StringIO()
    live = LiveStatus(Console(file=screen, force_terminal=True, width=120), _state(tmp_path), 6)
    live.start()
    time.sleep(0.2)
    live.stop()
    live.stop()  # twice is harmless: the study's end and its error path may both call it
    assert "2/6 done · 2 running" in screen.getvalue()
