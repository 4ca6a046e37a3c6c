"""The Ray Tune trainable: one model run with the sampled values, reporting the metric at every validation
with a checkpoint Tune can restore (for retries, HyperBand pauses and PBT exploits)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from automl.registry import get_model

CHECKPOINT_FILE = "mal_model_latest.pth"


def trial_dir(study_dir: str | Path, trial_id: str) -> Path:
    return Path(study_dir) / "trials" / trial_id


def _report_callback(metric: str):
    """A Lightning callback that reports each validation to Tune together with a restorable checkpoint."""
    import math

    from lightning.pytorch.callbacks import Callback
    from ray import tune

    class TuneReport(Callback):
        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking:
                return
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
            metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
            if metric not in metrics:
                return
            metrics["epoch"] = trainer.current_epoch + 1
            with tempfile.TemporaryDirectory() as tmp:
                trainer.save_checkpoint(Path(tmp) / CHECKPOINT_FILE)
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))

    return TuneReport()


def run_trial(
    config: dict[str, Any], *, model_name: str, base_spec: dict[str, Any], study_dir: str, max_epochs: int, cpus: float, metric: str
) -> None:
    """Train the base spec with the sampled values for up to `max_epochs`; Tune's scheduler may stop it earlier."""
    import torch
    from ray import tune

    torch.set_num_threads(max(1, int(cpus)))
    model = get_model(model_name)
    out = trial_dir(study_dir, tune.get_context().get_trial_id())
    values = {
        **config,
        "results_dir": str(out),
        "train.num_epochs": max_epochs,
        "train.validation_interval": 1,
        "train.resume_training_checkpoint_path": None,
    }
    spec = model.spec.with_values(model.spec.validate_dict(base_spec), values)
    restored = tune.get_checkpoint()
    if restored is not None:  # a retry, an unpaused HyperBand trial, or a PBT exploit of another trial
        train_dir = spec.output_dir("train")
        train_dir.mkdir(parents=True, exist_ok=True)
        with restored.as_directory() as src:
            shutil.copyfile(Path(src) / CHECKPOINT_FILE, train_dir / CHECKPOINT_FILE)
    model.entry("fit")(spec, callbacks=[_report_callback(metric)], enable_progress_bar=False)
