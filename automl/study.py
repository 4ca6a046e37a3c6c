"""Run or resume a study: Ray Tune over the model's trainable with the chosen algorithm, the study folder
kept up to date, and at the end the best trial promoted and the tracking closed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from automl import algorithms, driver, stopping
from automl.champion import rescore_champion
from automl.gain import study_gain
from automl.promotion import WarmPromoter, baselines_on_worker, evaluate_on_worker, promote
from automl.recorder import StudyRecorder, scheduler_resumable
from automl.registry import TunableModel, get_model
from automl.settings import AutoMLConfig, study_config
from automl.space import SearchSpace, study_space
from automl.stall import StallGuard
from automl.state import FINAL, StudyState, TrialRecord, read_study
from automl.tracking import (
    WEIGHTS_FILE,
    BackgroundTracker,
    StudyTracker,
    promote_champion,
    redact,
    tracking_uri,
)
from plumbing import signals
from plumbing.errors import UserError
from plumbing.files import atomic_write_text
from plumbing.ray_session import connect_ray
from plumbing.safe_yaml import dump_yaml

TRACKING_FLUSH_SECONDS = 60.0  # how long the end of a study waits for MLflow calls still queued
SPEC_FILE = "spec.yaml"


@dataclass
class StudyResult:
    state: StudyState
    best: TrialRecord | None
    best_dir: Path | None
    final_metrics: dict[str, Any] | None
    tracking_uri: str = ""
    champion: str = ""  # what happened to the champion alias, in words
    spec: Any = None
    model: TunableModel | None = None


def run_study(model: TunableModel, spec: Any, space: SearchSpace, study_dir: Path, console: Console | None = None) -> StudyResult:
    """Run the study the spec's `automl` section describes over `space`; write the study folder; promote into best/."""
    from automl.cluster import check_shared_storage

    console = console or Console()
    driver.quiet_libraries()
    config = study_config(spec)
    connect_ray()
    check_shared_storage(study_dir, tracking_uri(config.tracking_uri), console=console)  # before anything is written
    settings = driver.study_settings(model, spec, config)
    prior = _prior_study(model, config, settings, space)
    first = list(space.first_points().values()) if config.warm_start else []
    if prior is not None and prior.best is not None and (best := space.fitted(prior.best.params)) not in first:
        first.insert(min(1, len(first)), best)  # after the spec's values, whose gain the study reports
    # the algorithms refuse what they cannot run (a grid larger than max_trials) before the study folder exists
    searcher, scheduler = algorithms.build(
        config.algorithm,
        space,
        algorithms.StudySettings(
            metric=settings["metric"],
            mode=settings["mode"],
            max_trials=config.max_trials,
            max_epochs=settings["max_epochs"],
            grace_period=settings["grace_period"],
            reduction_factor=config.reduction_factor,
            seed=settings["seed"],
            shape_fields=model.shape_fields,
            first_points=tuple(first),
            prior_trials=tuple(prior.trials) if prior is not None and config.algorithm in algorithms.LEARNING else (),
        ),
    )
    study_dir.mkdir(parents=True, exist_ok=True)
    state = StudyState(study_dir, settings, space)
    state.write()
    atomic_write_text(study_dir / SPEC_FILE, dump_yaml(spec.model_dump(mode="json")))
    tracker, tracking = _tracking(model, config, console)
    tracking.send("start_study", str(study_dir.resolve()), settings, space.to_dict())

    console.print(
        f"[bold]study[/] {model.name} · {config.algorithm} · {config.max_trials} trials × ≤{settings['max_epochs']} epochs · "
        f"{settings['max_concurrent']} at once · searching {', '.join(space.names)}"
    )
    if prior is not None:
        learns = config.algorithm in algorithms.LEARNING
        console.print(prior.summary() if learns else
                      f"warm start from {prior.folder}: {config.algorithm} learns nothing from earlier trials; "
                      + (f"its best, {prior.best.trial_id}, runs first" if prior.best else "none of them reached the budget"))
    recorder = _recorder(model, spec, config, state, console, tracking, scheduler)
    tuner = driver.new_tuner(
        model, spec, study_dir, settings, searcher, scheduler, algorithms.param_space(config.algorithm, space),
        _callbacks(recorder, state),
    )
    return _fit_and_conclude(tuner, model, spec, state, tracker, tracking, recorder)


def resume_study(study_dir: Path, console: Console | None = None) -> StudyResult:
    """Continue a study whose driver died: finished trials stay as they are, unfinished ones restart from their
    last checkpoint, the searcher (Tune's snapshot) and the ASHA scheduler (ours) carry on, and so do the
    MLflow runs."""
    console = console or Console()
    driver.quiet_libraries()
    doc = read_study(study_dir)
    if doc.get("status") == "completed":
        raise UserError(f"{study_dir}: the study has already completed; `automl status {study_dir}` shows it")
    model = get_model(doc["settings"].get("model_ref") or doc["settings"]["model"])
    spec = model.load_spec(study_dir / SPEC_FILE, [])
    config = study_config(spec)
    space = study_space(model, spec, config)
    if not same_space(space.to_dict(), doc["search_space"]):
        raise UserError(f"{study_dir}: the search space file changed since the study started; resume needs the same space")
    state = StudyState.load(study_dir, space)
    tuner = driver.restored_tuner(model, spec, study_dir, state.settings)
    if tuner is None:
        raise UserError(
            f"{study_dir}: the study stopped before Ray Tune saved its first snapshot; nothing to resume, start it again"
        )
    state.status = "running"
    tracker, tracking = _tracking(model, config, console)
    if state.mlflow_run_id:
        tracking.send("reattach", state.mlflow_run_id)
    else:
        tracking.send("start_study", str(study_dir.resolve()), state.settings, space.to_dict())
    _drop_unsnapshotted(state, study_dir / driver.TUNE_DIR, tracking, console)
    done = sum(r.status in FINAL for r in state.trials.values())
    console.print(f"[bold]resuming[/] {study_dir}: {done} trials finished, {len(state.trials) - done} to continue")
    scheduler = driver.tuner_scheduler(tuner)
    recorder = _recorder(model, spec, config, state, console, tracking, scheduler)
    driver.set_callbacks(tuner, _callbacks(recorder, state))
    if not scheduler_resumable(scheduler) and config.algorithm not in ("bayesian", "random", "grid"):
        console.print(f"[yellow]{config.algorithm}: its scheduler starts its brackets afresh on resume (only ASHA's state is saved)[/]")
    state.write()
    return _fit_and_conclude(tuner, model, spec, state, tracker, tracking, recorder)


def _prior_study(model: TunableModel, config: AutoMLConfig, settings: dict[str, Any], space: SearchSpace) -> Any:
    """automl.warm_start_from's study, read and checked before anything is written; recorded in the settings."""
    if not config.warm_start_from:
        return None
    from automl.prior_study import read_prior_study

    prior = read_prior_study(
        Path(config.warm_start_from), model.name, settings["metric"], settings["mode"], space, settings["max_epochs"]
    )
    settings["warm_start_from"] = prior.record()
    return prior


SPACE_IDENTITY = ("model", "parameters", "base")  # what resume needs unchanged; the first points were queued already


def same_space(now: dict[str, Any], recorded: dict[str, Any]) -> bool:
    """The same searched space: parameters, ranges and the spec values they read (not the warm-start points,
    which a study started by an older version recorded otherwise, or not at all)."""
    return all(now.get(key) == recorded.get(key) for key in SPACE_IDENTITY)


def _fit_and_conclude(
    tuner: Any, model: TunableModel, spec: Any, state: StudyState, tracker: StudyTracker, tracking: BackgroundTracker,
    recorder: StudyRecorder,
) -> StudyResult:
    """The trials, then the best one promoted; a stop signal on the way ends the study as `interrupted`."""
    try:
        promoter = WarmPromoter(model, state.settings)
        recorder.on_first_result = promoter.start
        with signals.deferred():  # a signal stops Tune gracefully (stopping.StopTune), then comes back here
            try:
                tuner.fit()
            finally:
                recorder.status.stop()  # whatever ended the trials, the terminal gets its cursor back
        if signals.requested():
            raise signals.Interrupted(signals.requested())
        return _conclude(model, spec, state, tracker, tracking, promoter)
    except signals.Interrupted as exc:
        raise stopping.interrupted(state, tracking, exc.signum) from None


def _tracking(model: TunableModel, config: AutoMLConfig, console: Console) -> tuple[StudyTracker, BackgroundTracker]:
    tracker = StudyTracker(tracking_uri(config.tracking_uri), config.experiment_name or f"automl-{model.name}")
    return tracker, BackgroundTracker(tracker, lambda text: console.print(f"[yellow]{text}[/]"))


def _recorder(model, spec, config, state, console, tracking, scheduler) -> StudyRecorder:
    return StudyRecorder(
        state, console, model, spec.model_dump(mode="json"), tracking, config.log_all_checkpoints, scheduler
    )


def _callbacks(recorder: StudyRecorder, state: StudyState) -> list[Any]:
    """Tune's callbacks: the recorder first, a stop signal handed on, and the guard against a stalled scheduler."""
    return [recorder, *stopping.tune_callbacks(), StallGuard(state.settings["max_trials"], recorder.end_stalled)]


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
    model: TunableModel, spec: Any, state: StudyState, tracker: StudyTracker, tracking: BackgroundTracker,
    promoter: WarmPromoter,
) -> StudyResult:
    """Pick the best trial, evaluate and promote it, and close the tracking (bounded wait for its backlog)."""
    metric, mode = state.metric, state.mode
    # an unreachable server gets no more synchronous calls: each could block for minutes in retries
    tracked = tracking.close(TRACKING_FLUSH_SECONDS) and tracker.parent_id is not None
    state.mlflow_run_id = tracker.parent_id
    best = state.best_so_far()
    result = StudyResult(state, best, None, None, tracking_uri=tracker.uri, spec=spec, model=model)
    rescored = None
    if best is not None:
        result.best_dir, result.final_metrics = promote(model, spec, best, state.dir, state.settings, promoter.actor)
        if tracked:  # before the promoter goes: it evaluates the champion too
            rescored = _track_safely(
                rescore_champion, model, spec, state.dir, tracker.uri, metric, model.eval_set(spec),
                lambda champion: evaluate_on_worker(model, champion, state.settings, promoter.actor),
            )
        state.gain = _gain(model, spec, state, promoter.actor)
    promoter.stop()
    if best is None:
        state.status = "failed"
        state.write()
        if tracked:
            _track_safely(tracker.end_study, "failed", None)
        return result
    champion = None
    if tracked:
        champion = _track_safely(
            promote_champion, tracker.uri, model.registered_name, tracker.parent_id, result.best_dir, result.final_metrics,
            metric, mode, eval_set=model.eval_set(spec), rescored=rescored,
        )
    result.champion = champion[2] if champion else "not registered: the tracking server was unreachable"
    state.status = "completed"
    state.best = {
        "trial_id": best.trial_id,
        "params": best.params,
        f"{metric}_during_search": best.best_metric,
        "epochs": best.epochs,
        "final_evaluation": result.final_metrics,
        "model": str(result.best_dir / WEIGHTS_FILE),
        "champion": result.champion,
        "mlflow": {"tracking_uri": redact(tracker.uri), "study_run_id": tracker.parent_id},
    }
    state.write()
    if tracked:
        _track_safely(
            tracker.end_study, "completed", {"trial_id": best.trial_id, **(result.final_metrics or {})}, state.gain
        )
    return result


def _gain(model: TunableModel, spec: Any, state: StudyState, promoter: Any) -> dict[str, Any]:
    """study.json's `gain`; a baseline that cannot run is left out with its reason, never losing the study."""
    try:
        baselines = baselines_on_worker(model, spec, state.settings, promoter)
        failed = ""
    except Exception as exc:  # the trials' results stand without the baselines
        baselines, failed = {}, f"the baselines failed: {str(exc).splitlines()[0][:160]}"
    warm = state.settings.get("warm_start", True)
    point = state.space.first_points().get("your spec's values", {}) if warm else {}
    gain = study_gain(list(state.trials.values()), state.metric, state.mode, state.space.spec_values, point, baselines)
    if not warm:
        gain["note"] = "automl.warm_start=false: the spec's values were not queued"
    elif gain["default"] is None and gain.get("note") == "no trial ran the spec's values" and state.settings["algorithm"] == "grid":
        gain["note"] += " (they are not a point of the grid)"
    if failed:
        gain["baselines_note"] = failed
    return gain


def _track_safely(call: Any, *args: Any, **kwargs: Any) -> Any:
    """A tracking call after the trials: a failure is reported, never allowed to lose the finished study."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:  # the study folder already holds the results
        Console(stderr=True).print(f"[yellow]MLflow tracking failed ({redact(str(exc)).splitlines()[0][:200]})[/]")
        return None
