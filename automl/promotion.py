"""Promotion: the best trial's best checkpoint evaluated once more on a Ray worker (the driver imports no
torch), and best/ written: the weights-only file, the winning spec and that evaluation's metrics. Other
evaluations the study's end needs (a champion's, on this study's set) run on the same worker."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from automl.registry import TunableModel
from automl.state import BEST_DIR, TrialRecord
from automl.tracking import WEIGHTS_FILE
from automl.trial import trial_dir, trial_spec
from plumbing.errors import UserError
from plumbing.files import atomic_write_text
from plumbing.safe_yaml import dump_yaml


class Promoter:
    """The final evaluation's process, warmed ahead so that its imports (seconds of torch and Lightning) are
    done by the time the last trial ends. Idle until then; it holds no CPU."""

    def __init__(self, modules: str) -> None:
        for module in ("torch", *modules.split(",")):  # run() needs torch: imported here, it is off the study's end
            importlib.import_module(module)

    def run(self, work: Any, *args: Any, threads: int) -> Any:
        import torch

        torch.set_num_threads(threads)
        return work(*args)


class WarmPromoter:
    """The study's Promoter, started on demand: the driver starts it at the first trial result, so that on a
    small machine its imports do not compete with the first trials' own (they delay the first training step).
    Studies on GPUs or with DDP trials have none: they evaluate in a task given a trial's resources."""

    def __init__(self, model: TunableModel, settings: dict[str, Any]) -> None:
        self.modules = model.code_modules()
        self.wanted = not settings["gpus_per_trial"] and settings["workers_per_trial"] == 1
        self._actor: Any = None

    def start(self) -> None:
        if self.wanted and self._actor is None:
            import ray

            self._actor = ray.remote(Promoter).options(num_cpus=0).remote(self.modules)

    @property
    def actor(self) -> Any:
        """The Promoter actor (started now if no trial has reported), or None where the study has none."""
        self.start()
        return self._actor

    def stop(self) -> None:
        if self._actor is not None:
            import ray

            ray.kill(self._actor)
            self._actor = None


def promote(
    model: TunableModel, spec: Any, best: TrialRecord, study_dir: Path, settings: dict[str, Any], promoter: Any = None
) -> tuple[Path, dict]:
    """best/ from the best trial, evaluated with a trial's resources; the model's user errors stay one line."""
    return _on_worker(model, settings, promoter, _promote, model, spec, best, study_dir, settings["max_epochs"])


def evaluate_on_worker(model: TunableModel, spec: Any, settings: dict[str, Any], promoter: Any = None) -> dict:
    """The model's evaluation of `spec` (its metrics), run as promotion runs: the driver imports no torch."""
    return _on_worker(model, settings, promoter, _evaluate, model, spec)


def baselines_on_worker(model: TunableModel, spec: Any, settings: dict[str, Any], promoter: Any = None) -> dict[str, dict]:
    """Each of the model's baselines on the spec's validation set, run as promotion runs."""
    return {name: dict(_on_worker(model, settings, promoter, _baseline, model, spec, name)) for name in model.baselines}


def _baseline(model: TunableModel, spec: Any, name: str) -> Any:
    return model.baseline(name)(spec)


def _on_worker(model: TunableModel, settings: dict[str, Any], promoter: Any, work: Any, *args: Any) -> Any:
    """`work(*args)` on the warm promoter, else in a task with a trial's resources."""
    import ray

    if promoter is not None:
        ref = promoter.run.remote(work, *args, threads=max(1, int(settings["cpus_per_trial"])))
    else:
        task = ray.remote(work).options(num_cpus=settings["cpus_per_trial"], num_gpus=settings["gpus_per_trial"])
        ref = task.remote(*args)
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, (UserError, *model.user_errors)):
            raise UserError(str(exc.cause)) from None
        raise


def _evaluate(model: TunableModel, spec: Any) -> dict:
    return model.entry("evaluate")(spec)[0]


def _promote(model: TunableModel, spec: Any, best: TrialRecord, study_dir: Path, max_epochs: int) -> tuple[Path, dict]:
    trained = trial_spec(model, spec.model_dump(mode="json"), best.params, trial_dir(study_dir, best.trial_id), max_epochs)
    train_dir = model.train_dir(trained)
    checkpoint = train_dir / model.best_checkpoint
    if not checkpoint.is_file():
        checkpoint = train_dir / model.latest_checkpoint
    if not checkpoint.is_file():
        raise UserError(f"best trial {best.trial_id} left no checkpoint in {train_dir}")
    best_dir = study_dir / BEST_DIR
    best_dir.mkdir(parents=True, exist_ok=True)
    weights = best_dir / WEIGHTS_FILE
    model.entry("export_weights")(checkpoint, weights)
    winner = model.spec_with(
        spec, best.params,
        results_dir=str(best_dir.resolve()), epochs=max_epochs, evaluate_checkpoint=str(weights.resolve()), resume_from=None,
    )
    atomic_write_text(best_dir / "spec.yaml", dump_yaml(winner.model_dump(mode="json")))
    metrics, written = model.entry("evaluate")(winner)
    atomic_write_text(best_dir / "metrics.json", Path(written).read_text())
    return best_dir, metrics
