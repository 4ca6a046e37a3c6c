"""The study's Tune callback: keeps the study folder, MLflow and the console up to date from the driver, from
the results Ray brings back (so it works for trials on other processes and nodes)."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console

from automl.live_status import LiveStatus, clock
from automl.registry import TunableModel
from automl.state import FINAL, StudyState, TrialRecord
from automl.tracking import BackgroundTracker
from automl.trial import trial_dir, trial_spec, write_outcome
from plumbing.numbers import finite_number as _finite
from plumbing.safe_yaml import dump_yaml


class StudyRecorder(Callback):
    """Keeps the study folder, MLflow and the console up to date from the driver (works for remote trials).

    Its Tune callback state carries the scheduler's state, which Tune itself does not snapshot, so that a
    resumed study keeps its ASHA rungs (Tune restores the searcher, e.g. the Optuna history, on its own).
    """

    def __init__(
        self, state: StudyState, console: Console, model: TunableModel, base_spec: dict[str, Any],
        tracking: BackgroundTracker | None = None, log_checkpoints: bool = False, scheduler: Any = None,
    ) -> None:
        self.state, self.console = state, console
        self.model, self.base_spec = model, base_spec
        self.max_trials = state.settings["max_trials"]
        self.tracking = tracking
        self.log_checkpoints = log_checkpoints
        self.scheduler = scheduler
        self.status = LiveStatus(console, state, self.max_trials)
        self.on_first_result: Any = None  # called once, at the first result any trial reports
        # per trial, when its current run began and the seconds it had run before: a trial's seconds count its
        # runs only, not a HyperBand pause or a driver that was down before a resume
        self._runs: dict[str, tuple[float, float]] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config into the experiment state; a console and a thread do not pickle
        skip = ("console", "tracking", "status", "on_first_result", "_runs")
        return {k: v for k, v in self.__dict__.items() if k not in skip}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data, console=Console(), tracking=None, on_first_result=None, _runs={})
        self.status = LiveStatus(self.console, self.state, self.max_trials)

    def setup(self, **info: Any) -> None:
        self.status.start()

    def on_experiment_end(self, trials, **info):
        self.status.stop()

    def get_state(self) -> dict | None:
        if not scheduler_resumable(self.scheduler):
            return None
        return {"scheduler": pickle.dumps(self.scheduler.__dict__)}

    def set_state(self, state: dict) -> None:
        if state.get("scheduler") and scheduler_resumable(self.scheduler):
            self.scheduler.__dict__.update(pickle.loads(state["scheduler"]))

    def _send(self, method: str, *args: Any) -> None:
        if self.tracking:
            self.tracking.send(method, *args)

    def _write(self) -> None:
        if self.tracking and self.tracking.tracker.parent_id:  # set by the tracking thread; a resume needs it
            self.state.mlflow_run_id = self.tracking.tracker.parent_id
        self.state.write()

    def on_trial_start(self, iteration, trials, trial, **info):
        rec = self.state.record(trial.trial_id, trial.config)
        if rec.status in FINAL:  # a finished trial replaying its outcome after a resume
            return
        rec.status, rec.started = "RUNNING", rec.started or time.time()
        self._runs[trial.trial_id] = (time.time(), rec.seconds)
        self._write()
        spec = self._trial_spec(trial.trial_id, rec.params)
        self._send("start_trial", trial.trial_id, rec.params, dump_yaml(spec.model_dump(mode="json")))
        self.console.print(f"[dim]start[/] {trial.trial_id}  " + "  ".join(f"{k}={_fmt(v)}" for k, v in rec.params.items()))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if self.on_first_result is not None:
            started, self.on_first_result = self.on_first_result, None
            started()
        rec = self.state.record(trial.trial_id, trial.config)
        epoch = int(result.get("epoch", rec.epochs))
        if rec.status in FINAL or any(h["epoch"] == epoch for h in rec.history):
            return  # a replayed or restored epoch was recorded already
        value = _finite(result.get(self.state.metric))
        rec.epochs = epoch
        scores = {name: _finite(result.get(name)) for name in self.model.metrics}
        rec.history.append({"epoch": epoch, self.state.metric: value, **{k: v for k, v in scores.items() if v is not None}})
        if value is not None and (rec.best_metric is None or (value > rec.best_metric) == (self.state.mode == "max")):
            rec.best_metric = value
        rec.seconds = self._seconds(rec)
        self._write()
        self._send("trial_result", trial.trial_id, result)

    def _seconds(self, rec: Any) -> float:
        """The seconds `rec`'s trial has run, over all its runs."""
        began, before = self._runs.get(rec.trial_id, (rec.started or time.time(), 0.0))
        return before + time.time() - began

    def _finish(self, trial, status: str, error: str = "") -> None:
        rec = self.state.record(trial.trial_id, trial.config)
        if rec.status in FINAL:
            return
        rec.status, rec.error = status, error
        if rec.started:
            rec.seconds = self._seconds(rec)
        self._write()
        last = {"epoch": rec.epochs, self.state.metric: rec.history[-1][self.state.metric]} if rec.history else {}
        write_outcome(self.state.dir, trial.trial_id, status, error, last)
        if self.log_checkpoints:
            train_dir = self.model.train_dir(self._trial_spec(trial.trial_id, rec.params))
            self._send("log_checkpoint", trial.trial_id, train_dir / self.model.best_checkpoint)
        self._send("end_trial", trial.trial_id, status, error)
        self._progress(trials_all=self.state.trials.values(), last=rec)

    def on_trial_complete(self, iteration, trials, trial, **info):
        budget = self.state.settings["max_epochs"]
        rec = self.state.record(trial.trial_id, trial.config)
        self._finish(trial, "COMPLETED" if rec.epochs >= budget else "STOPPED")

    def end_stalled(self, trials: list) -> None:
        """Trials the scheduler left paused with nothing left to run (automl.stall): each ends at its reported epochs."""
        ids = ", ".join(t.trial_id for t in trials)
        note = f"the scheduler left {ids} paused with nothing left to run; ended at their reported epochs"
        self.state.notes.append(note)
        self.console.print(f"[yellow]{note}[/]")
        for trial in trials:
            self.on_trial_complete(0, [], trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "FAILED", _error_summary(trial))

    def _trial_spec(self, trial_id: str, params: dict[str, Any]) -> Any:
        out = trial_dir(self.state.dir, trial_id)
        return trial_spec(self.model, self.base_spec, params, out, self.state.settings["max_epochs"])

    def _progress(self, trials_all, last: TrialRecord) -> None:
        recs = list(trials_all)
        done = sum(r.status in FINAL for r in recs)
        running = sum(r.status == "RUNNING" for r in recs)
        pending = max(0, self.max_trials - done - running)
        elapsed = time.time() - self.state.started
        eta = elapsed / done * (self.max_trials - done) if done else None
        best = self.state.best_so_far()
        best_text = f"best {self.state.metric} {best.best_metric:.4f} ({best.trial_id})" if best else "no result yet"
        last_text = f"{last.trial_id} {last.status.lower()}" + (
            f" {self.state.metric}={last.best_metric:.4f} @ {last.epochs} ep" if last.best_metric is not None else ""
        )
        self.console.print(
            f"[bold]{done}/{self.max_trials} done[/] · {running} running · {pending} pending · {best_text} · "
            f"{clock(elapsed)} elapsed" + (f" · ETA {clock(eta)}" if eta is not None and pending + running else "")
            + f"   [dim]({last_text})[/]"
        )


def scheduler_resumable(scheduler: Any) -> bool:
    """ASHA keys its state by trial id and pickles cleanly; HyperBand, BOHB and PBT hold live Trial objects."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    return isinstance(scheduler, AsyncHyperBandScheduler)


def _error_summary(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    try:
        text = Path(path).read_text().strip().splitlines() if path else []
    except OSError:
        text = []
    lines = [ln for ln in text if ln.strip() and not ln.startswith(("Traceback", "  "))]
    return (lines[-1] if lines else "trial failed")[:300]


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
