"""What every model's Lightning training shares: quiet logs, the run's seed, and the checkpoint callbacks that
write TAO's file names (periodic, latest, best by a validation metric). Lightning is imported by the
functions that need it, so the names and the seed bound stay light to import."""

from __future__ import annotations

import logging
import os
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plumbing.errors import TrainingFailure

SEED_MAX = 2**32 - 1  # numpy's seeds are unsigned 32-bit
EPOCH_TEMPLATE = "model_epoch_{epoch:03d}"
STEP_TEMPLATE = "model_epoch_{epoch:03d}_step_{step:05d}"
EXTENSION = ".pth"

log = logging.getLogger("plumbing")


class OutOfMemory(TrainingFailure):
    """A training run did not fit in memory; the message says which knob to turn."""


@dataclass
class FitResult:
    train_dir: Path
    epochs_run: int
    best_metric: float
    best_checkpoint: Path | None
    metric: str  # what best_metric is: the validation metric that picked the best checkpoint

    @classmethod
    def of(cls, train_dir: Path, trainer: Any, best: Any) -> FitResult:
        """What a finished Trainer and its best-checkpoint callback say about the run."""
        score = best.best_model_score
        return cls(
            train_dir=train_dir,
            epochs_run=trainer.current_epoch,
            best_metric=float(score) if score is not None else float("nan"),
            best_checkpoint=Path(best.best_model_path) if best.best_model_path else None,
            metric=best.monitor,
        )


def quiet_lightning() -> None:
    for name in (
        "lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric",
        "lightning.pytorch.trainer.connectors.signal_connector",  # "Received SIGTERM": our one line says it
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*Found .* module.*in eval mode.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")  # resuming there is the point


def run_seed(seed: int) -> int:
    """The spec's seed, or for -1 (TAO: no fixed seed) a fresh one. DDP ranks started by Lightning take rank
    0's from the environment (seed_everything put it there), so every rank shards the same order."""
    if seed >= 0:
        return seed
    if os.environ.get("LOCAL_RANK", "0") != "0" and "PL_GLOBAL_SEED" in os.environ:
        return int(os.environ["PL_GLOBAL_SEED"])
    drawn = secrets.randbelow(SEED_MAX + 1)
    log.warning("train.seed is -1: this run's seed is %d", drawn)
    return drawn


def keep_best(train_dir: Path, best_name: str, metric: str, mode: str = "max") -> Any:
    """`<best_name>.pth` by a validation metric, written when validation ends, so it exists before any
    end-of-epoch hook reports that score (a scheduler may stop a trial inside its report; Lightning's
    default would save after that)."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(
        dirpath=train_dir, filename=best_name, monitor=metric, mode=mode, save_top_k=1,
        enable_version_counter=False, save_on_train_epoch_end=False,
    )
    best.FILE_EXTENSION = EXTENSION
    return best


def periodic_checkpoints(train_dir: Path, latest_name: str, interval: int, unit: str) -> Any:
    """TAO's `model_epoch_NNN[_step_NNNNN].pth` every `interval` epochs or steps, and `<latest_name>.pth`."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    periodic = ModelCheckpoint(
        dirpath=train_dir,
        filename=STEP_TEMPLATE if unit == "step" else EPOCH_TEMPLATE,
        auto_insert_metric_name=False,
        save_top_k=-1,
        save_last=True,
        enable_version_counter=False,  # a resumed run overwrites the latest file, never writes -v1 copies
        every_n_epochs=interval if unit == "epoch" else None,
        every_n_train_steps=interval if unit == "step" else None,
        # at the end of every training epoch, after its validation if it has one: left to Lightning, it saves
        # only when validation runs, so with validation_interval 2 the odd epochs, the last one included, had
        # no checkpoint and the latest file stayed an epoch behind
        save_on_train_epoch_end=True,
    )
    periodic.CHECKPOINT_NAME_LAST = latest_name
    periodic.FILE_EXTENSION = EXTENSION
    return periodic
