"""A stop signal during a study: Ray Tune's graceful stop (the running trials end, Tune saves its last snapshot),
study.json marked `interrupted`, Ray shut down from the driver, and one line saying how to carry on.

Tune stops gracefully on SIGINT or SIGUSR1 (its documented signals). The driver keeps SIGINT itself, so that
SIGINT and SIGTERM get the same treatment and the study can write its own state, and hands the stop to Tune
as SIGUSR1 from inside Tune's loop.
"""

from __future__ import annotations

import os
import signal
from typing import Any

from ray.tune import Callback

from automl.state import FINAL, StudyState
from automl.tracking import BackgroundTracker
from plumbing import signals

TUNE_STOP = signal.SIGUSR1
INTERRUPT_FLUSH_SECONDS = 10.0  # queued MLflow calls get this long; a scheduler's grace period is often 30 s


class StopTune(Callback):
    """Passes a recorded stop signal on to Tune once its loop runs, so a signal that came while the Tuner was
    still starting is not lost."""

    def __init__(self) -> None:
        self.sent = False

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        if signals.requested() and not self.sent and callable(signal.getsignal(TUNE_STOP)):
            self.sent = True
            signal.raise_signal(TUNE_STOP)


def tune_callbacks() -> list[Callback]:
    """StopTune under a command that handles stop signals, with Tune's own SIGINT handler off (ours keeps it)."""
    if not signals.handling():
        return []
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # read by Tune when the run starts
    return [StopTune()]


def interrupted(state: StudyState, tracking: BackgroundTracker, signum: int) -> signals.Interrupted:
    """The study as a signal left it: unfinished trials wait for `automl resume`, which continues them from
    their last reported epoch; finished ones stay as they are."""
    import ray

    if state.status != "completed":
        for rec in state.trials.values():
            if rec.status not in FINAL:
                rec.status = "PENDING"
        state.status = "interrupted"
        state.write()
    tracking.close(INTERRUPT_FLUSH_SECONDS)  # the MLflow runs stay open: resume carries them on
    ray.shutdown()  # here, not at interpreter exit, where Ray's core worker prints a C++ stack on its way down
    done = sum(r.status in FINAL for r in state.trials.values())
    return signals.Interrupted(
        signum,
        f"study.json marked interrupted with {done} of {state.settings['max_trials']} trials finished; "
        f"`automl resume {state.dir}` carries on from there",
    )
