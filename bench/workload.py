"""A fixed, known-cost training run for measuring orchestration overhead (its model: bench/fixed_cost.py).

It takes MAL's spec and search space, so `automl run --model bench.fixed_cost:FIXED_COST` studies it like MAL,
but each epoch is one training step that keeps one CPU core busy until a deadline (`epoch_seconds` of wall
time, however busy the machine is) and validation logs an `mIoU` that is a smooth, deterministic function of
the sampled values and the epoch. Whatever a study takes beyond trials x epochs x epoch_seconds is overhead.

The epoch length comes from the environment variable BENCH_EPOCH_SECONDS (default 2.5 s). Every `fit` call
appends its timestamps (fit start, first training step, epoch ends, end) to `<train dir>/timing.json`.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from bench.common import quiet_lightning
from mal.names import BEST_NAME, EXTENSION, LATEST_FILE, LATEST_NAME
from mal.runner import FitResult
from mal.spec import ExperimentSpec
from mal.tunable import MODEL
from plumbing.files import atomic_write_text
from plumbing.lightning_run import keep_best
from plumbing.torch_files import save_atomic

EPOCH_SECONDS_ENV = "BENCH_EPOCH_SECONDS"
DEFAULT_EPOCH_SECONDS = 2.5
TIMING_FILE = "timing.json"
SEARCHED = ("train.lr", "train.loss_crf_weight", "train.loss_mil_weight", "train.warmup_epochs")


def epoch_seconds() -> float:
    return float(os.environ.get(EPOCH_SECONDS_ENV, DEFAULT_EPOCH_SECONDS))


def searched_ranges() -> dict[str, dict[str, Any]]:
    """The searched parameters with MAL's own ranges (its search space file), so every runner searches alike."""
    parameters = yaml.safe_load(MODEL.search_space.read_text())["parameters"]
    return {name: parameters[name] for name in SEARCHED}


def score(lr: float, crf_weight: float, mil_weight: float, warmup_epochs: int, epoch: int) -> float:
    """The workload's 'mIoU' after `epoch` epochs: a smooth hill over the values, rising with the epochs."""
    fit_quality = (
        math.exp(-0.5 * ((math.log10(lr) + 4.0) / 1.2) ** 2)
        * math.exp(-0.5 * ((crf_weight - 1.0) / 0.8) ** 2)
        * math.exp(-0.5 * (math.log2(mil_weight) - 1.0) ** 2 / 4.0)
        * (1.0 - 0.05 * warmup_epochs)
    )
    return 0.3 + 0.6 * fit_quality * (1.0 - math.exp(-epoch / 2.0))


def spec_score(spec: ExperimentSpec, epoch: int) -> float:
    t = spec.train
    return score(t.lr, t.loss_crf_weight, t.loss_mil_weight, t.warmup_epochs, epoch)


def spin(seconds: float) -> None:
    """Keep one core busy for `seconds` of wall time: a deadline, so a busy machine does not stretch it."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


class FixedCostModule(L.LightningModule):
    def __init__(self, spec: ExperimentSpec, seconds: float, timing: dict[str, Any]) -> None:
        super().__init__()
        self.spec, self.seconds, self.timing = spec, seconds, timing
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.timing["first_step"] is None:
            self.timing["first_step"] = time.time()
        spin(self.seconds)
        return ((self.weight - batch[0]) ** 2).sum()

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        self.log("mIoU", spec_score(self.spec, self.current_epoch + 1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _EpochClock(Callback):
    def __init__(self, timing: dict[str, Any]) -> None:
        self.timing = timing

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.timing["epoch_ends"].append(time.time())


def _checkpoints(train_dir: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """mal's two files: the best by mIoU (saved when validation ends) and the latest (every epoch end)."""
    best = keep_best(train_dir, BEST_NAME, "mIoU")
    latest = ModelCheckpoint(dirpath=train_dir, save_top_k=0, save_last=True, enable_version_counter=False)
    latest.CHECKPOINT_NAME_LAST, latest.FILE_EXTENSION = LATEST_NAME, EXTENSION
    return best, latest


def _append_timing(train_dir: Path, timing: dict[str, Any]) -> None:
    path = train_dir / TIMING_FILE
    runs = json.loads(path.read_text()) if path.is_file() else []
    atomic_write_text(path, json.dumps([*runs, timing]))


def fit(
    spec: ExperimentSpec, callbacks: Sequence[Any] = (), enable_progress_bar: bool = True, logger: Any = None, **_: Any
) -> FitResult:
    """Train the fixed-cost module for spec.train.num_epochs; resume from the train folder's latest checkpoint."""
    quiet_lightning()
    timing: dict[str, Any] = {"pid": os.getpid(), "fit_start": time.time(), "first_step": None, "epoch_ends": []}
    train_dir = spec.output_dir("train")
    train_dir.mkdir(parents=True, exist_ok=True)
    best, latest = _checkpoints(train_dir)
    data = torch.utils.data.TensorDataset(torch.ones(1, 1))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=spec.train.num_epochs,
        check_val_every_n_epoch=spec.train.validation_interval,
        callbacks=[best, latest, _EpochClock(timing), *callbacks],
        logger=logger if logger is not None else False,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=train_dir,
    )
    resume = train_dir / LATEST_FILE
    try:
        trainer.fit(
            FixedCostModule(spec, epoch_seconds(), timing),
            torch.utils.data.DataLoader(data),
            torch.utils.data.DataLoader(data),
            ckpt_path=str(resume) if resume.is_file() else None,
        )
    finally:  # a trial that the scheduler stops still leaves its timestamps
        timing["end"] = time.time()
        _append_timing(train_dir, timing)
    return FitResult.of(train_dir, trainer, best)


def weights(checkpoint_path: str | Path) -> dict[str, torch.Tensor]:
    """The weights-only state dict, with the epochs the checkpoint had trained (its score depends on them)."""
    checkpoint = torch.load(str(checkpoint_path), map_location="cpu", weights_only=True)
    if "epochs_trained" in checkpoint:
        return checkpoint
    return {**checkpoint["state_dict"], "epochs_trained": torch.tensor(checkpoint["epoch"] + 1)}


def export_weights(checkpoint_path: str | Path, target: str | Path) -> Path:
    """What promotion keeps: the weights with the epochs they had trained."""
    return save_atomic(weights(checkpoint_path), target)


def evaluate(spec: ExperimentSpec) -> tuple[dict[str, float], Path]:
    """The score of evaluate.checkpoint: the same function validation logged, at the epochs it had trained."""
    epochs = int(weights(spec.evaluate.checkpoint)["epochs_trained"])
    metrics = {"mIoU": spec_score(spec, epochs), "epochs_trained": epochs}
    path = spec.output_dir("evaluate") / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(metrics))
    return metrics, path
