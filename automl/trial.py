"""The Ray Tune trainable: one model run with the sampled values, reporting the metric at every validation
with a checkpoint Tune can restore (for retries, HyperBand pauses and PBT exploits)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from automl.registry import TunableModel
from plumbing.files import atomic_write_text

OUTCOME_FILE = "outcome.json"
FATAL_FILE = "fatal.txt"  # a failure a retry would only repeat (diverged, out of memory, bad input)


def trial_dir(study_dir: str | Path, trial_id: str) -> Path:
    return Path(study_dir) / "trials" / trial_id


class TrialFailedBefore(RuntimeError):
    """A trial that had failed before the driver restarted fails again with its recorded reason, not rerun."""


def write_outcome(study_dir: str | Path, trial_id: str, status: str, error: str, last_result: dict[str, Any]) -> None:
    """How a trial ended, written by the driver: a resumed study replays it instead of training again."""
    doc = {"status": status, "error": error, "last_result": last_result}
    atomic_write_text(trial_dir(study_dir, trial_id) / OUTCOME_FILE, json.dumps(doc))


def _replay_outcome(out: Path) -> bool:
    """After a driver restart Tune may restart a trial that had in fact finished (its last experiment snapshot
    predates the end): report the recorded end again so the searcher and scheduler see it, and train nothing."""
    from ray import tune

    fatal = out / FATAL_FILE
    if fatal.is_file():  # Tune retries any error; a deterministic one fails again at once, untrained
        raise TrialFailedBefore(fatal.read_text())
    path = out / OUTCOME_FILE
    if not path.is_file():
        return False
    doc = json.loads(path.read_text())
    if doc["status"] == "FAILED":
        raise TrialFailedBefore(doc["error"] or "trial failed")
    if doc["last_result"]:
        tune.report(doc["last_result"])
    return True


def trial_spec(model: TunableModel, base_spec: dict[str, Any], values: dict[str, Any], out: Path, max_epochs: int) -> Any:
    """What a trial trains: the study's spec with the sampled values, writing into the trial's folder for the
    study's epoch budget, validating every epoch (every epoch is a rung), never resuming from a user's file."""
    return model.spec_with(
        model.validate_spec(base_spec), values,
        results_dir=str(out), epochs=max_epochs, validation_interval=1, resume_from=None,
    )


# Reports go out at the end of the training epoch, after that epoch's validation has written the model's
# best checkpoint (the protocol's `fit`): Tune may stop the trial inside the report, and the best
# checkpoint of the epoch it reports must already exist by then.


def _validation_metrics(trainer, metric: str) -> dict[str, float] | None:
    """The finite scalar metrics of this epoch's validation, with its epoch; None when `metric` is missing."""
    import math

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    return {**metrics, "epoch": trainer.current_epoch + 1} if metric in metrics else None


def _report_callback(metric: str, checkpoint_name: str):
    """A Lightning callback that reports each validation to Tune together with a restorable checkpoint."""
    from lightning.pytorch.callbacks import Callback
    from ray import tune

    class TuneReport(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            metrics = _validation_metrics(trainer, metric)
            if metrics is None:
                return
            with tempfile.TemporaryDirectory() as tmp:
                trainer.save_checkpoint(Path(tmp) / checkpoint_name)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    return TuneReport()


def _train_report_callback(metric: str):
    """Under Ray Train: every rank reports each validation (Train wants all ranks); Tune gets rank 0's.

    No checkpoint travels with it: the trial's own folder holds the model's latest checkpoint, which a retried
    or unpaused trial resumes from.
    """
    import ray.train
    from lightning.pytorch.callbacks import Callback

    class TrainReport(Callback):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            metrics = _validation_metrics(trainer, metric)
            if metrics is not None:
                ray.train.report(metrics)

    return TrainReport()


def _ddp_worker(cfg: dict[str, Any]) -> None:
    """One Ray Train worker of a multi-process trial: Lightning DDP over the process group Ray made."""
    import torch
    from ray.train.lightning import RayDDPStrategy, RayLightningEnvironment

    torch.set_num_threads(cfg["threads"])
    model = cfg["model"]
    model.entry("fit")(
        model.validate_spec(cfg["spec"]),
        callbacks=[_train_report_callback(cfg["metric"])],
        enable_progress_bar=False,
        strategy=RayDDPStrategy(),
        plugins=[RayLightningEnvironment()],
        devices="auto",
    )


def _run_ddp(spec: Any, model: TunableModel, metric: str, workers: int, worker_cpus: float, gpus: float, out: Path) -> None:
    """The current Ray pattern for DDP inside a Tune trial: a TorchTrainer launched from the Tune function,
    its reports forwarded to Tune by TuneReportCallback."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    per_worker = {"CPU": worker_cpus, **({"GPU": gpus / workers} if gpus else {})}
    TorchTrainer(
        _ddp_worker,
        train_loop_config={
            "spec": spec.model_dump(mode="json"), "model": model, "metric": metric, "threads": max(1, round(worker_cpus)),
        },
        scaling_config=ray.train.ScalingConfig(num_workers=workers, use_gpu=gpus > 0, resources_per_worker=per_worker),
        run_config=ray.train.RunConfig(name="ray_train", storage_path=str(out), callbacks=[TuneReportCallback()]),
    ).fit()


def run_trial(
    config: dict[str, Any],
    *,
    model: TunableModel,
    base_spec: dict[str, Any],
    study_dir: str,
    max_epochs: int,
    cpus: float,
    metric: str,
    workers: int = 1,
    gpus: float = 0.0,
    worker_cpus: float = 1.0,
) -> None:
    """Train the base spec with the sampled values for up to `max_epochs`; Tune's scheduler may stop it earlier.

    With `workers > 1` the trial is a DDP run of that many Ray Train workers, `worker_cpus` each, sharing `gpus`.
    """
    import torch
    from ray import tune

    out = trial_dir(study_dir, tune.get_context().get_trial_id())
    if _replay_outcome(out):
        return
    spec = trial_spec(model, base_spec, config, out, max_epochs)
    restored = tune.get_checkpoint()
    if restored is not None:  # a retry, an unpaused HyperBand trial, or a PBT exploit of another trial
        train_dir = model.train_dir(spec)
        train_dir.mkdir(parents=True, exist_ok=True)
        latest = model.latest_checkpoint
        with restored.as_directory() as src:
            staged = train_dir / f".{latest}.restoring"  # a kill mid-copy leaves the old file whole
            shutil.copyfile(Path(src) / latest, staged)
            os.replace(staged, train_dir / latest)
    if workers > 1:
        _run_ddp(spec, model, metric, workers, worker_cpus, gpus, out)
        return
    torch.set_num_threads(max(1, int(cpus)))
    try:
        model.entry("fit")(spec, callbacks=[_report_callback(metric, model.latest_checkpoint)], enable_progress_bar=False)
    except model.fatal_errors + model.user_errors as exc:
        atomic_write_text(out / FATAL_FILE, f"{type(exc).__name__}: {exc}")
        raise
