"""MLflow tracking of a study: a parent run per study, a child run per trial, and the champion alias.

Everything is logged from the study's driver through `MlflowClient`, from the results Tune already brings
back, so it works the same when trials run in other processes or on other nodes. Ray's own MLflow
callbacks make flat, unrelated runs; the `mlflow.parentRunId` tag is what nests them in the UI.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import queue
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from plumbing.errors import UserError
from plumbing.storage import CHAMPION

WEIGHTS_FILE = "model.pth"  # the weights-only file in best/, and so in every registered version
DEFAULT_DB = "mlflow.db"
# Keys that must never reach MLflow params: credentials a spec might carry.
_SECRET_MARKERS = ("key", "token", "password", "secret")


def tracking_uri(configured: str | None = None) -> str:
    """automl.tracking_uri / --tracking-uri, else $MLFLOW_TRACKING_URI, else sqlite in the working directory."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{Path.cwd() / DEFAULT_DB}"


def redact(text: str) -> str:
    """Hide the user:password part of any URL in `text` (tracking URIs may carry credentials)."""
    return re.sub(r"(//)[^/@\s]+@", r"\1***@", text)


def _client(uri: str):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _public(key: str) -> bool:
    return not any(marker in key.lower().rsplit(".", 1)[-1] for marker in _SECRET_MARKERS)


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


class StudyTracker:
    """Parent and child runs of one study. Picklable: Tune stores its callbacks with the experiment."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri, self.experiment = uri, experiment
        self.parent_id: str | None = None
        self.children: dict[str, str] = {}
        self.experiment_id: str | None = None
        self._cached = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_cached"}

    def __setstate__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data, _cached=None)

    @property
    def client(self):
        if self._cached is None:
            self._cached = _client(self.uri)
        return self._cached

    def _experiment_id(self) -> str:
        if self.experiment_id is None:
            found = self.client.get_experiment_by_name(self.experiment)
            self.experiment_id = found.experiment_id if found else self.client.create_experiment(self.experiment)
        return self.experiment_id

    def start_study(self, name: str, settings: dict[str, Any], space: dict[str, Any]) -> str:
        from mlflow.entities import Param

        tags = {"automl.study_dir": name, "automl.kind": "study"}
        commit = _git_commit()
        if commit:
            tags["mlflow.source.git.commit"] = commit
        run = self.client.create_run(self._experiment_id(), run_name=Path(name).name, tags=tags)
        self.parent_id = run.info.run_id
        space_text = json.dumps(space, indent=2, sort_keys=True)
        params = {**{f"automl.{k}": v for k, v in settings.items()}, "search_space_sha256": hashlib.sha256(space_text.encode()).hexdigest()[:16]}
        self.client.log_batch(self.parent_id, params=[Param(k, redact(str(v))[:6000]) for k, v in params.items() if _public(k)])
        self.client.log_text(self.parent_id, space_text, "search_space.json")
        return self.parent_id

    def reattach(self, parent_id: str) -> None:
        """Carry on a study's runs after a restart: the same parent run, and its children by trial id."""
        self.parent_id = parent_id
        self.experiment_id = self.client.get_run(parent_id).info.experiment_id
        self.client.update_run(parent_id, status="RUNNING")
        children = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=10000
        )
        for run in children:
            trial_id = run.data.tags.get("automl.trial_id")
            if trial_id:
                self.children[trial_id] = run.info.run_id
                self.client.update_run(run.info.run_id, status="RUNNING")

    def start_trial(self, trial_id: str, params: dict[str, Any], spec_yaml: str | None = None) -> None:
        from mlflow.entities import Param

        if trial_id in self.children:
            return
        run = self.client.create_run(
            self._experiment_id(),
            run_name=f"trial-{trial_id}",
            tags={"mlflow.parentRunId": self.parent_id, "automl.trial_id": trial_id, "automl.kind": "trial"},
        )
        self.children[trial_id] = run.info.run_id
        self.client.log_batch(run.info.run_id, params=[Param(k, redact(str(v))) for k, v in params.items() if _public(k)])
        if spec_yaml:
            self.client.log_text(run.info.run_id, redact(spec_yaml), "spec.yaml")

    def trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        run_id = self.children.get(trial_id)
        if run_id is None:
            return
        step = int(result.get("epoch", 0))
        now = int(time.time() * 1000)
        metrics = [
            Metric(k, float(v), now, step)
            for k, v in result.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and _is_model_metric(k)
        ]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)

    def log_checkpoint(self, trial_id: str, path: Path) -> None:
        run_id = self.children.get(trial_id)
        if run_id is not None and path.is_file():
            self.client.log_artifact(run_id, str(path), "checkpoint")

    def end_trial(self, trial_id: str, status: str, error: str = "") -> None:
        run_id = self.children.get(trial_id)
        if run_id is None:
            return
        self.client.set_tag(run_id, "automl.status", status)
        if error:
            self.client.set_tag(run_id, "automl.failure_reason", error[:5000])
        self.client.set_terminated(run_id, "FAILED" if status == "FAILED" else "FINISHED")

    def abandon_trial(self, trial_id: str) -> None:
        run_id = self.children.pop(trial_id, None)
        if run_id is not None:
            self.client.set_tag(run_id, "automl.status", "ABANDONED")
            self.client.set_terminated(run_id, "KILLED")

    def end_study(self, status: str, best: dict[str, Any] | None, gain: dict[str, Any] | None = None) -> None:
        if self.parent_id is None:
            return
        if best:
            for key, value in best.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    self.client.log_metric(self.parent_id, f"best_{key}", float(value))
            self.client.set_tag(self.parent_id, "automl.best_trial", str(best.get("trial_id", "")))
        for key, value in (gain or {}).items():  # the spec's values' figure, the gain over it, the baselines'
            if isinstance(value, int | float) and not isinstance(value, bool) and key != "budget":
                self.client.log_metric(self.parent_id, f"gain.{key}", float(value))
        self.client.set_tag(self.parent_id, "automl.status", status)
        self.client.set_terminated(self.parent_id, "FINISHED" if status == "completed" else "FAILED")


class BackgroundTracker:
    """Sends a tracker's calls in order from one thread, so a slow or unreachable MLflow server never stalls
    or ends a study: a failing call is retried with backoff while the study goes on (its folder holds every
    result meanwhile), and `close` waits a bounded time for the backlog before giving up on it."""

    def __init__(self, tracker: StudyTracker, warn: Callable[[str], None]) -> None:
        self.tracker, self.warn = tracker, warn
        self._queue: queue.Queue = queue.Queue()
        self._deadline: float | None = None
        self._failing = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._drain, name="mlflow-tracking", daemon=True)
        self._thread.start()

    def send(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._queue.put((method, args, kwargs))

    def close(self, timeout: float = 60.0) -> bool:
        """Deliver what is queued within `timeout` seconds; False when some calls were given up."""
        self._deadline = time.monotonic() + timeout
        self._queue.put(None)
        self._thread.join(timeout + 1.0)
        if self._thread.is_alive() or self.dropped:
            left = self._queue.qsize() + self.dropped
            self.warn(f"MLflow tracking: {left} calls could not be delivered; the study folder has every result")
            return False
        return True

    def _drain(self) -> None:
        while (item := self._queue.get()) is not None:
            method, args, kwargs = item
            delay = 1.0
            while True:
                try:
                    getattr(self.tracker, method)(*args, **kwargs)
                except Exception as exc:  # any client or server failure: the study must go on
                    if not self._failing:
                        self._failing = True
                        self.warn(
                            f"MLflow tracking at {redact(self.tracker.uri)} failed ({redact(str(exc)).splitlines()[0][:200]}); "
                            "the study goes on and retries in the background"
                        )
                    if self._deadline is not None and time.monotonic() + delay > self._deadline:
                        self.dropped += 1
                        break
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
                    continue
                if self._failing:
                    self._failing = False
                    self.warn("MLflow tracking reachable again; catching up")
                break


_TUNE_KEYS = ("time_", "timestamp", "training_iteration", "iterations_since", "pid", "done", "config")


def _is_model_metric(key: str) -> bool:
    """What the trainable reported, without Tune's bookkeeping (time_*, pid, iteration counters...)."""
    return not key.startswith(_TUNE_KEYS)


def current_champion(uri: str, model_name: str) -> Any:
    """The model version the champion alias names (its tags say how it was judged), or None."""
    from mlflow.exceptions import MlflowException

    try:
        return _client(uri).get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def download_version(uri: str, version: Any, target: Path) -> Path:
    """A registered version's files (the weights, spec.yaml, metrics.json of its study's best/) in `target`."""
    import mlflow.artifacts

    _client(uri)  # sets the tracking URI the download resolves against
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # the study's console is ours
    target.mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(target)))


def _number(value: Any) -> float:
    """A metric value or its tag text as a float; None, "None" or anything else unreadable is NaN (never better)."""
    if isinstance(value, bool):
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def promote_champion(
    uri: str,
    model_name: str,
    run_id: str,
    best_dir: Path,
    metrics: dict[str, Any],
    metric: str,
    mode: str,
    eval_set: str,
    rescored: Any = None,
) -> tuple[str, bool, str]:
    """Log best/ to the study's run, register it as a new version of `model_name`, and move the champion
    alias only when the new version beats the champion on the same evaluation set: the one the champion was
    registered with, or this study's when `rescored` (automl.champion.Rescored) evaluated it here again.

    Returns (version, moved, message).
    """
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    client.log_artifacts(run_id, str(best_dir), "model")
    for key, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            client.log_metric(run_id, f"final_{key}", float(value))
    try:
        client.create_registered_model(model_name)
    except MlflowException:
        pass  # already registered
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/model"
    tags = {metric: str(metrics.get(metric)), "eval_set": eval_set, "metric": metric}
    version = client.create_model_version(model_name, source, run_id=run_id, tags=tags).version
    try:
        current = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        current = None
    new_value = _number(metrics.get(metric))
    if current is None:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        return version, True, f"{model_name}@{CHAMPION} is version {version} ({metric} {new_value:.4f}), the first"
    old_value = _number(current.tags.get(metric))
    # a champion judged by another metric (a mask metric against a box-only one) has no value of this one to beat
    same_metric = current.tags.get("metric", metric) == metric
    same_set = current.tags.get("eval_set") == eval_set
    here = ""
    if rescored is not None and rescored.version == current.version and rescored.metrics is not None:
        old_value, same_metric, same_set = _number(rescored.metrics.get(metric)), True, True
        here = f" (version {current.version} evaluated again on this validation set)"
    better = same_set and same_metric and (new_value > old_value if mode == "max" else new_value < old_value)
    if better:
        client.set_registered_model_alias(model_name, CHAMPION, version)
        return version, True, f"{model_name}@{CHAMPION} moved to version {version}: {metric} {new_value:.4f} beats {old_value:.4f}{here}"
    failed = f"; evaluating the champion on this set failed: {rescored.problem}" if rescored is not None and rescored.problem else ""
    if not same_set:
        reason = f"was evaluated on another validation set than the champion, so the two are not comparable{failed}"
    elif not same_metric:
        reason = f"was judged by {metric}, the champion by {current.tags['metric']}, so the two are not comparable{failed}"
    else:
        reason = f"scored {metric} {new_value:.4f}, not better than {old_value:.4f}{here}"
    return version, False, f"{model_name}@{CHAMPION} stays at version {current.version}: version {version} {reason}"


def resolve_model_uri(location: str, uri: str | None = None) -> str:
    """`models:/<name>@<alias>` or `models:/<name>/<version>` -> a local weights file (the model's own
    package expands its shorthands, such as a bare `champion`, into these)."""
    name, ref = _parse_models_uri(location)
    backend = tracking_uri(uri)
    database = backend.removeprefix("sqlite:///") if backend.startswith("sqlite:///") else None
    if database is not None and not Path(database).is_file():
        # MLflow would create an empty database here (and log its migrations) only to find no model in it
        raise UserError(
            f"{location}: no tracking database at {database}; set MLFLOW_TRACKING_URI to the one the study used"
        )
    client = _client(backend)
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, ref) if not ref.isdigit() else client.get_model_version(name, ref)
    except MlflowException as exc:
        raise UserError(f"{location}: no such registered model version in {tracking_uri(uri)} ({exc.message.splitlines()[0]})") from None
    import mlflow.artifacts

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tempfile.mkdtemp(prefix="registered-model-")))
    weights = local / WEIGHTS_FILE
    if not weights.is_file():
        raise UserError(f"{location}: version {version.version} holds no {WEIGHTS_FILE}")
    return str(weights)


def _parse_models_uri(location: str) -> tuple[str, str]:
    body = location.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, alias
    if "/" in body:
        name, version = body.split("/", 1)
        return name, version
    raise UserError(f"{location}: expected models:/<name>@<alias> or models:/<name>/<version>")
