"""A study whose scheduler stalls. Ray Tune's HyperBand (and BOHB's, built on it) now and then leaves a trial
PAUSED, waiting for a bracket decision, when nothing runs, nothing is pending and every trial has been
sampled: no result will ever come to trigger that decision, and Tune's loop spins forever (seen in HyperBand
studies of the replay benchmark on 2 cores, where trials take a fraction of a second). The guard ends such a
study once that state has held for a while: the paused trials end where they stand (their reported epochs
count, as for a trial the scheduler stopped), and Tune's loop is stopped the way a stop signal stops it, so the
study concludes."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Sequence
from typing import Any

from ray.tune import Callback

from automl.stopping import TUNE_STOP

STALL_SECONDS = 30.0  # a healthy bracket decision unpauses its trials within one step of Tune's loop


def stalled(trials: Sequence[Any], max_trials: int) -> bool:
    """Paused trials and nothing else that could produce a result: no trial running or pending, none left to sample."""
    statuses = [t.status for t in trials]
    return len(statuses) >= max_trials and "PAUSED" in statuses and not {"RUNNING", "PENDING"} & set(statuses)


def _stop_tune() -> None:
    if callable(signal.getsignal(TUNE_STOP)):  # Tune's handler: it is installed when its loop runs in the main thread
        signal.raise_signal(TUNE_STOP)


class StallGuard(Callback):
    """Watches Tune's loop; after `seconds` of `stalled`, hands the paused trials to `on_stall` and stops the loop."""

    def __init__(
        self, max_trials: int, on_stall: Callable[[list[Any]], None], seconds: float = STALL_SECONDS,
        clock: Callable[[], float] = time.monotonic, stop: Callable[[], None] = _stop_tune,
    ) -> None:
        self.max_trials, self.on_stall, self.seconds = max_trials, on_stall, seconds
        self.clock, self.stop = clock, stop
        self.since: float | None = None
        self.fired = False

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; the driver's functions do not restore
        return {"max_trials": self.max_trials, "seconds": self.seconds, "since": None, "fired": False}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data, on_stall=lambda trials: None, clock=time.monotonic, stop=_stop_tune)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if self.fired:
            return
        if not stalled(trials, self.max_trials):
            self.since = None
            return
        now = self.clock()
        self.since = now if self.since is None else self.since
        if now - self.since >= self.seconds:
            self.fired = True
            self.on_stall([t for t in trials if t.status == "PAUSED"])
            self.stop()
