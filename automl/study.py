"""Run a study: Ray Tune over the registry's trainable, the study folder contract (study.json,
leaderboard.csv, best/), and the choice of the best trial at the largest budget reached."""

from __future__ import annotations

import csv
import functools
import io
import json
import logging
import math
import os
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ray.tune import Callback
from rich.console import Console

from automl.registry import TunableModel
from automl.space import SearchSpace
from automl.tracking import BackgroundTracker, StudyTracker, file_hash, promote_champion, redact, tracking_uri
from automl.trial import trial_dir, write_outcome
from mal.errors import UserError
from mal.storage import atomic_write_text as atomic_write
from mal.storage import local_file

STUDY_FILE = "study.json"
TRACKING_FLUSH_SECONDS = 60.0  # how long the end of a study waits for MLflow calls still queued
TUNE_DIR = "ray"  # Ray Tune's experiment folder inside the study folder
LEADERBOARD_FILE = "leaderboard.csv"
BEST_DIR = "best"


@dataclass
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    status: str = "PENDING"  # PENDING RUNNING COMPLETED STOPPED FAILED
    best_metric: float | None = None
    epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    started: float | None = None
    seconds: float = 0.0
    error: str = ""


FINAL = ("COMPLETED", "STOPPED", "FAILED")


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def select_best(records: list[TrialRecord], mode: str) -> TrialRecord | None:
    """The best trial among those that reached the largest budget any successful trial reached.

    A trial stopped at a low rung never beats one trained to the full budget on a low-epoch value.
    """
    usable = [r for r in records if r.status in ("COMPLETED", "STOPPED") and r.best_metric is not None]
    if not usable:
        return None
    top_budget = max(r.epochs for r in usable)
    finalists = [r for r in usable if r.epochs == top_budget]
    pick = max if mode == "max" else min
    return pick(finalists, key=lambda r: r.best_metric)


class StudyState:
    """What the driver knows about every trial; written to the study folder after every event."""

    def __init__(self, study_dir: Path, settings: dict[str, Any], space: SearchSpace, metric: str, mode: str) -> None:
        self.dir = study_dir
        self.settings = settings
        self.space = space
        self.metric = metric
        self.mode = mode
        self.trials: dict[str, TrialRecord] = {}
        self.started = time.time()
        self.status = "running"
        self.best: dict[str, Any] | None = None
        self.mlflow_run_id: str | None = None

    @classmethod
    def load(cls, study_dir: Path, space: SearchSpace) -> StudyState:
        """The state a previous driver wrote (study.json is rewritten after every trial event)."""
        doc = json.loads((study_dir / STUDY_FILE).read_text())
        s = doc["settings"]
        state = cls(study_dir, s, space, s["metric"], s["mode"])
        state.started, state.mlflow_run_id = doc.get("started", state.started), doc.get("mlflow_run_id")
        for row in doc.get("records", []):
            state.trials[row["trial_id"]] = TrialRecord(**row)
        return state

    def record(self, trial_id: str, params: dict[str, Any]) -> TrialRecord:
        if trial_id not in self.trials:
            self.trials[trial_id] = TrialRecord(trial_id, {k: params.get(k) for k in self.space.names})
        return self.trials[trial_id]

    def best_so_far(self) -> TrialRecord | None:
        return select_best(list(self.trials.values()), self.mode)

    def write(self) -> None:
        names = self.space.names
        rows = [
            {
                "trial_id": r.trial_id,
                "status": r.status,
                **{n: r.params.get(n) for n in names},
                f"best_{self.metric}": "" if r.best_metric is None else f"{r.best_metric:.6f}",
                "epochs": r.epochs,
                "seconds": f"{r.seconds:.1f}",
                "error": r.error,
            }
            for r in self.trials.values()
        ]
        header = ["trial_id", "status", *names, f"best_{self.metric}", "epochs", "seconds", "error"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.dir / LEADERBOARD_FILE, buffer.getvalue())
        counts: dict[str, int] = {}
        for r in self.trials.values():
            counts[r.status] = counts.get(r.status, 0) + 1
        best = self.best_so_far()
        doc = {
            "status": self.status,
            "settings": self.settings,
            "search_space": self.space.to_dict(),
            "started": self.started,
            "elapsed_seconds": round(time.time() - self.started, 1),
            "trials": counts,
            "best_so_far": None
            if best is None
            else {"trial_id": best.trial_id, "params": best.params, self.metric: best.best_metric, "epochs": best.epochs},
            "best": self.best,
            "mlflow_run_id": self.mlflow_run_id,
            "records": [asdict(r) for r in self.trials.values()],
        }
        atomic_write(self.dir / STUDY_FILE, json.dumps(doc, indent=2, default=str))


class StudyRecorder(Callback):
    """Keeps the study folder, MLflow and the console up to date from the driver (works for remote trials).

    Its Tune callback state carries the scheduler's state, which Tune itself does not snapshot, so that a
    resumed study keeps its ASHA rungs (Tune restores the searcher, e.g. the Optuna history, on its own).
    """

    def __init__(
        self, state: StudyState, console: Console, max_trials: int, max_concurrent: int,
        tracking: BackgroundTracker | None = None, trial_spec: Any = None, log_checkpoints: bool = False,
        scheduler: Any = None,
    ) -> None:
        self.state, self.console = state, console
        self.max_trials, self.max_concurrent = max_trials, max_concurrent
        self.tracking, self.trial_spec = tracking, trial_spec  # trial_spec(params) -> the trial's spec YAML
        self.log_checkpoints = log_checkpoints
        self.scheduler = scheduler

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run config into the experiment state; a console and a thread do not pickle
        return {k: v for k, v in self.__dict__.items() if k not in ("console", "tracking")}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data, console=Console(), tracking=None)

    def get_state(self) -> dict | None:
        if not _scheduler_resumable(self.scheduler):
            return None
        return {"scheduler": pickle.dumps(self.scheduler.__dict__)}

    def set_state(self, state: dict) -> None:
        if state.get("scheduler") and _scheduler_resumable(self.scheduler):
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
        self._write()
        self._send("start_trial", trial.trial_id, rec.params, self.trial_spec(rec.params) if self.trial_spec else None)
        self.console.print(f"[dim]start[/] {trial.trial_id}  " + "  ".join(f"{k}={_fmt(v)}" for k, v in rec.params.items()))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        rec = self.state.record(trial.trial_id, trial.config)
        epoch = int(result.get("epoch", rec.epochs))
        if rec.status in FINAL or any(h["epoch"] == epoch for h in rec.history):
            return  # a replayed or restored epoch was recorded already
        value = _finite(result.get(self.state.metric))
        rec.epochs = epoch
        rec.history.append({"epoch": epoch, self.state.metric: value})
        if value is not None and (rec.best_metric is None or (value > rec.best_metric) == (self.state.mode == "max")):
            rec.best_metric = value
        rec.seconds = time.time() - (rec.started or time.time())
        self._write()
        self._send("trial_result", trial.trial_id, result)

    def _finish(self, trial, status: str, error: str = "") -> None:
        rec = self.state.record(trial.trial_id, trial.config)
        if rec.status in FINAL:
            return
        rec.status, rec.error = status, error
        if rec.started:
            rec.seconds = time.time() - rec.started
        self._write()
        last = {"epoch": rec.epochs, self.state.metric: rec.history[-1][self.state.metric]} if rec.history else {}
        write_outcome(self.state.dir, trial.trial_id, status, error, last)
        if self.log_checkpoints:
            self._send("log_checkpoint", trial.trial_id, trial_dir(self.state.dir, trial.trial_id) / "train" / "mal_model_best.pth")
        self._send("end_trial", trial.trial_id, status, error)
        self._progress(trials_all=self.state.trials.values(), last=rec)

    def on_trial_complete(self, iteration, trials, trial, **info):
        budget = self.state.settings["max_epochs"]
        rec = self.state.record(trial.trial_id, trial.config)
        self._finish(trial, "COMPLETED" if rec.epochs >= budget else "STOPPED")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, "FAILED", _error_summary(trial))

    def _progress(self, trials_all, last: TrialRecord) -> None:
        recs = list(trials_all)
        done = sum(r.status in ("COMPLETED", "STOPPED", "FAILED") for r in recs)
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
            f"{_clock(elapsed)} elapsed" + (f" · ETA {_clock(eta)}" if eta is not None and pending + running else "")
            + f"   [dim]({last_text})[/]"
        )


def _scheduler_resumable(scheduler: Any) -> bool:
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


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def _quiet_libraries() -> None:
    """Our progress lines are the study's console; Ray's tables and Optuna's per-trial logs stay out of it."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a failed trial's reason is on our progress line and in the leaderboard; its stack stays in its error file
    logging.getLogger("ray.tune.execution.tune_controller").addFilter(
        lambda record: not record.getMessage().startswith("Trial task failed")
    )
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter honours verbose=0
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")  # relative spec paths resolve as the user wrote them


def _init_ray() -> None:
    """Connect to $RAY_ADDRESS, or start a local Ray without a dashboard."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    ray.init(
        address=address or None,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        configure_logging=True,
    )


@dataclass
class StudyResult:
    state: StudyState
    best: TrialRecord | None
    best_dir: Path | None
    final_metrics: dict[str, Any] | None
    tracking_uri: str = ""
    champion: str = ""  # what happened to the champion alias, in words
    spec: Any = None


def trial_spec_yaml(model: TunableModel, base_spec: dict[str, Any], params: dict[str, Any]) -> str:
    return model.spec.with_values(model.spec.validate_dict(base_spec), params).to_yaml()


# Logical CPU share of a DDP trial's Tune function (Ray refuses an empty request); its workers get the rest.
DDP_DRIVER_CPU = 0.01


def study_settings(model: TunableModel, spec: Any) -> dict[str, Any]:
    """What a study runs with, resolved from the spec and the Ray cluster; saved in study.json.

    The driver reads devices from Ray, not torch: it never imports torch, which saves seconds per study."""
    import ray

    a = spec.automl
    cluster = ray.cluster_resources()
    max_epochs = a.max_epochs or spec.train.num_epochs
    return {
        "model": model.name,
        "model_ref": model.ref,
        "algorithm": a.algorithm,
        "metric": a.metric,
        "mode": a.mode,
        "max_trials": a.max_trials,
        "max_epochs": max_epochs,
        "grace_period": min(a.grace_period, max_epochs),
        "reduction_factor": a.reduction_factor,
        "max_concurrent": a.max_concurrent or max(1, int(cluster.get("CPU", 1) // a.cpus_per_trial)),
        "cpus_per_trial": a.cpus_per_trial,
        "gpus_per_trial": a.gpus_per_trial if a.gpus_per_trial is not None else (1.0 if cluster.get("GPU", 0) else 0.0),
        "workers_per_trial": a.trial_workers(),
        "seed": a.seed if a.seed is not None else spec.train.seed,
        "max_failures": a.max_failures,
    }


def _trainable(model: TunableModel, spec: Any, study_dir: Path, settings: dict[str, Any]) -> Any:
    from ray import tune

    from automl.trial import run_trial

    workers, gpus, cpus = settings["workers_per_trial"], settings["gpus_per_trial"], settings["cpus_per_trial"]
    return tune.with_resources(
        tune.with_parameters(
            run_trial,
            model=model,
            base_spec=spec.to_dict(),
            study_dir=str(study_dir.resolve()),
            max_epochs=settings["max_epochs"],
            cpus=cpus,
            metric=settings["metric"],
            workers=workers,
            gpus=gpus,
            worker_cpus=(cpus - DDP_DRIVER_CPU) / workers,
        ),
        # a DDP trial's Tune function only launches its Ray Train workers, which hold the rest
        {"cpu": cpus, "gpu": gpus} if workers == 1 else {"cpu": DDP_DRIVER_CPU},
    )


def _warn(console: Console) -> Any:
    return lambda text: console.print(f"[yellow]{text}[/]")


def run_study(
    model: TunableModel,
    spec: Any,
    space: SearchSpace,
    study_dir: Path,
    console: Console | None = None,
) -> StudyResult:
    """Run the study described by `spec.automl` over `space`; write the study folder; promote into best/."""
    from ray import tune

    from automl import algorithms
    from automl.cluster import check_shared_storage

    console = console or Console()
    _quiet_libraries()
    a = spec.automl
    _init_ray()
    check_shared_storage(study_dir, tracking_uri(a.tracking_uri), console=console)  # before anything is written
    settings = study_settings(model, spec)
    study_dir.mkdir(parents=True, exist_ok=True)
    state = StudyState(study_dir, settings, space, a.metric, a.mode)
    state.write()
    atomic_write(study_dir / "spec.yaml", spec.to_yaml())
    tracker = StudyTracker(tracking_uri(a.tracking_uri), a.experiment_name or f"automl-{model.name}")
    tracking = BackgroundTracker(tracker, _warn(console))
    tracking.send("start_study", str(study_dir.resolve()), settings, space.to_dict())

    searcher, scheduler = algorithms.build(
        a.algorithm,
        space,
        algorithms.StudySettings(
            metric=a.metric,
            mode=a.mode,
            max_trials=a.max_trials,
            max_epochs=settings["max_epochs"],
            grace_period=settings["grace_period"],
            reduction_factor=a.reduction_factor,
            seed=settings["seed"],
        ),
    )
    console.print(
        f"[bold]study[/] {model.name} · {a.algorithm} · {a.max_trials} trials × ≤{settings['max_epochs']} epochs · "
        f"{settings['max_concurrent']} at once · searching {', '.join(space.names)}"
    )
    recorder = _recorder(model, spec, state, console, tracking, scheduler)
    tuner = tune.Tuner(
        _trainable(model, spec, study_dir, settings),
        param_space=algorithms.param_space(a.algorithm, space),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=a.max_trials,
            max_concurrent_trials=settings["max_concurrent"],
            reuse_actors=True,  # the next trial runs in a finished trial's process: no start-up, imports done
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR,
            storage_path=str(study_dir.resolve()),
            callbacks=[recorder],
            verbose=0,
            # PBT exploits restore a donor's reported checkpoint, which must still exist by then
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None if a.algorithm == "pbt" else 1),
            failure_config=tune.FailureConfig(max_failures=a.max_failures),
        ),
    )
    promoter = start_promoter(model, settings)
    tuner.fit()
    return _conclude(model, spec, state, tracker, tracking, promoter)


def _recorder(model, spec, state, console, tracking, scheduler) -> StudyRecorder:
    return StudyRecorder(
        state, console, spec.automl.max_trials, state.settings["max_concurrent"], tracking,
        functools.partial(trial_spec_yaml, model, spec.to_dict()), spec.automl.log_all_checkpoints, scheduler,
    )


def resume_study(study_dir: Path, console: Console | None = None) -> StudyResult:
    """Continue a study whose driver died: finished trials stay as they are, unfinished ones restart from their
    last checkpoint, the searcher (Tune's snapshot) and the ASHA scheduler (ours) carry on, and so do the
    MLflow runs."""
    from ray import tune

    from automl.registry import get_model
    from automl.space import load_space_file, resolve_space

    console = console or Console()
    _quiet_libraries()
    study_file = study_dir / STUDY_FILE
    if not study_file.is_file():
        raise UserError(f"{study_dir} holds no study ({STUDY_FILE} not found)")
    doc = json.loads(study_file.read_text())
    if doc.get("status") == "completed":
        raise UserError(f"{study_dir}: the study has already completed; `automl status {study_dir}` shows it")
    model = get_model(doc["settings"].get("model_ref") or doc["settings"]["model"])
    spec = model.spec.load_spec(study_dir / "spec.yaml", [])
    a = spec.automl
    space = resolve_space(
        load_space_file(Path(a.search_space) if a.search_space else model.search_space), spec, a.hyperparameters, a.range_overrides
    )
    if space.to_dict() != doc["search_space"]:
        raise UserError(f"{study_dir}: the search space file changed since the study started; resume needs the same space")
    experiment = study_dir / TUNE_DIR
    if not tune.Tuner.can_restore(experiment):
        raise UserError(
            f"{study_dir}: the study stopped before Ray Tune saved its first snapshot; nothing to resume, start it again"
        )
    state = StudyState.load(study_dir, space)
    state.status = "running"
    tracker = StudyTracker(tracking_uri(a.tracking_uri), a.experiment_name or f"automl-{model.name}")
    tracking = BackgroundTracker(tracker, _warn(console))
    if state.mlflow_run_id:
        tracking.send("reattach", state.mlflow_run_id)
    else:
        tracking.send("start_study", str(study_dir.resolve()), state.settings, space.to_dict())
    _init_ray()
    tuner = tune.Tuner.restore(
        str(experiment), _trainable(model, spec, study_dir, state.settings), resume_unfinished=True, resume_errored=False
    )
    _drop_unsnapshotted(state, experiment, tracking, console)
    done = sum(r.status in FINAL for r in state.trials.values())
    console.print(f"[bold]resuming[/] {study_dir}: {done} trials finished, {len(state.trials) - done} to continue")
    # Tuner.restore brings back the original callbacks as pickled at the start; ours must be live ones
    # (a console, the tracking thread, the state just read) watching the scheduler Tune will use.
    internal = tuner._local_tuner
    internal.get_run_config().callbacks = [_recorder(model, spec, state, console, tracking, internal._tune_config.scheduler)]
    if not _scheduler_resumable(internal._tune_config.scheduler) and a.algorithm not in ("bayesian", "random", "grid"):
        console.print(f"[yellow]{a.algorithm}: its scheduler starts its brackets afresh on resume (only ASHA's state is saved)[/]")
    state.write()
    promoter = start_promoter(model, state.settings)
    tuner.fit()
    return _conclude(model, spec, state, tracker, tracking, promoter)


def _drop_unsnapshotted(state: StudyState, experiment: Path, tracking: BackgroundTracker, console: Console) -> None:
    """A trial started after Tune's last snapshot is unknown to Tune, which will sample a new one in its place:
    it leaves the leaderboard (its MLflow run is marked killed) so every trial appears once."""
    from ray.tune import ExperimentAnalysis

    known = {t.trial_id for t in ExperimentAnalysis(str(experiment)).trials}
    for trial_id, rec in list(state.trials.items()):
        if trial_id not in known and rec.status not in FINAL:
            del state.trials[trial_id]
            tracking.send("abandon_trial", trial_id)
            console.print(f"[dim]{trial_id} started after the last snapshot; a new trial takes its place[/]")


def _conclude(
    model: TunableModel, spec: Any, state: StudyState, tracker: StudyTracker, tracking: BackgroundTracker, promoter: Any
) -> StudyResult:
    """Pick the best trial, evaluate and promote it, and close the tracking (bounded wait for its backlog)."""
    a, study_dir = spec.automl, state.dir
    # an unreachable server gets no more synchronous calls: each could block for minutes in retries
    tracked = tracking.close(TRACKING_FLUSH_SECONDS) and tracker.parent_id is not None
    state.mlflow_run_id = tracker.parent_id
    best = state.best_so_far()
    result = StudyResult(state, best, None, None, tracking_uri=tracker.uri, spec=spec)
    if best is not None:
        result.best_dir, result.final_metrics = promote(model, spec, best, trial_dir(study_dir, best.trial_id), study_dir, state.settings, promoter)
    if promoter is not None:
        import ray

        ray.kill(promoter)
    if best is None:
        state.status = "failed"
        state.write()
        if tracked:
            _track_safely(tracker.end_study, "failed", None)
        return result
    champion = None
    if tracked:
        champion = _track_safely(
            promote_champion, tracker.uri, model.name, tracker.parent_id, result.best_dir, result.final_metrics,
            a.metric, a.mode, eval_set=file_hash(local_file(spec.dataset.val_ann_path)),
        )
    result.champion = champion[2] if champion else "not registered: the tracking server was unreachable"
    state.status = "completed"
    state.best = {
        "trial_id": best.trial_id,
        "params": best.params,
        f"{a.metric}_during_search": best.best_metric,
        "epochs": best.epochs,
        "final_evaluation": result.final_metrics,
        "model": str(result.best_dir / "model.pth"),
        "champion": result.champion,
        "mlflow": {"tracking_uri": redact(tracker.uri), "study_run_id": tracker.parent_id},
    }
    state.write()
    if tracked:
        _track_safely(tracker.end_study, "completed", {"trial_id": best.trial_id, **(result.final_metrics or {})})
    return result


def _track_safely(call: Any, *args: Any, **kwargs: Any) -> Any:
    """A tracking call after the trials: a failure is reported, never allowed to lose the finished study."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # the study folder already holds the results
        Console(stderr=True).print(f"[yellow]MLflow tracking failed ({redact(str(exc)).splitlines()[0][:200]})[/]")
        return None


class Promoter:
    """The final evaluation's process, started with the study so that its imports (seconds of torch and
    Lightning) are done by the time the last trial ends. Idle until then; it holds no CPU."""

    def __init__(self, modules: str) -> None:
        import importlib

        for module in modules.split(","):
            importlib.import_module(module)

    def promote(self, *args: Any, threads: int) -> tuple[Path, dict]:
        import torch

        torch.set_num_threads(threads)
        return _promote(*args)


def start_promoter(model: TunableModel, settings: dict[str, Any]) -> Any:
    """A warm Promoter for studies on CPUs; GPU studies evaluate in a task given a trial's GPU at the end."""
    import ray

    if settings["gpus_per_trial"] or settings["workers_per_trial"] > 1:
        return None
    return ray.remote(Promoter).options(num_cpus=0).remote(model.code_modules())


def promote(
    model: TunableModel, spec: Any, best: TrialRecord, best_trial_dir: Path, study_dir: Path,
    settings: dict[str, Any], promoter: Any = None,
) -> tuple[Path, dict]:
    """Final evaluation of the best trial on a Ray worker with a trial's resources (the driver imports no
    torch), then best/: the weights, the winning spec, and that evaluation's metrics."""
    import ray

    args = (model, spec, best, best_trial_dir, study_dir)
    if promoter is not None:
        ref = promoter.promote.remote(*args, threads=max(1, int(settings["cpus_per_trial"])))
    else:
        task = ray.remote(_promote).options(num_cpus=settings["cpus_per_trial"], num_gpus=settings["gpus_per_trial"])
        ref = task.remote(*args)
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, UserError):
            raise exc.cause from None
        raise


def _promote(model: TunableModel, spec: Any, best: TrialRecord, best_trial_dir: Path, study_dir: Path) -> tuple[Path, dict]:
    train_dir = best_trial_dir / "train"
    checkpoint = train_dir / "mal_model_best.pth"
    if not checkpoint.is_file():
        checkpoint = train_dir / "mal_model_latest.pth"
    if not checkpoint.is_file():
        raise UserError(f"best trial {best.trial_id} left no checkpoint in {train_dir}")
    best_dir = study_dir / BEST_DIR
    best_dir.mkdir(parents=True, exist_ok=True)
    from mal.checkpoint import save_atomic

    save_atomic(model.entry("weights")(checkpoint), best_dir / "model.pth")
    values = {
        **best.params,
        "results_dir": str(best_dir.resolve()),
        "train.num_epochs": spec.automl.max_epochs or spec.train.num_epochs,
        "evaluate.checkpoint": str((best_dir / "model.pth").resolve()),
        "train.resume_training_checkpoint_path": None,
    }
    winner = model.spec.with_values(spec, values)
    atomic_write(best_dir / "spec.yaml", winner.to_yaml())
    metrics, written = model.entry("evaluate")(winner)
    atomic_write(best_dir / "metrics.json", Path(written).read_text())
    return best_dir, metrics
