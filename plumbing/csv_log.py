"""Lightning's CSV logger, made to keep what earlier runs of the same training wrote.

Lightning's own deletes `metrics.csv` when its folder already holds files, so a resumed training lost the
metrics of every epoch before the resume. This one keeps the file and its columns; at the start of training
it drops only the rows logged after the checkpoint it resumed from (the resumed run logs those steps again),
or every row when the training starts afresh.
"""

from __future__ import annotations

import csv
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

__all__ = ["KeepingCSVLogger", "training_logger"]


class _KeepingWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        """Keep an earlier metrics file; its header is where the columns start."""
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])

    def keep_before(self, step: int | None) -> None:
        """Drop the rows logged at `step` or later (None: every row)."""
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            rows = list(csv.DictReader(file))
        kept = [] if step is None else [row for row in rows if _step(row) < step]
        if len(kept) == len(rows):
            return
        if not kept:
            self._fs.rm_file(self.metrics_file_path)
            self.metrics_keys = []
            return
        with self._fs.open(self.metrics_file_path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)


def _step(row: dict[str, Any]) -> float:
    try:
        return float(row.get("step") or 0)
    except ValueError:  # not a number: a row of someone else's; keep it
        return 0.0


class _TrimOnStart(Callback):
    """At the start of training, when the step a resumed run restarts from is known."""

    def __init__(self, logger: KeepingCSVLogger) -> None:
        self.logger = logger

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        writer = self.logger.experiment
        if isinstance(writer, _KeepingWriter):  # rank zero only: the other ranks hold a dummy
            # Lightning logs a row with the count of optimizer steps taken before it: the resumed run's
            # first row has the count its checkpoint restored
            step = trainer.fit_loop.epoch_loop._batches_that_stepped
            writer.keep_before(step if trainer.ckpt_path else None)


def training_logger(train_dir: Any, logger: Any = None) -> tuple[Any, list[Callback]]:
    """The Trainer's logger and the callbacks it needs: `logger` as given, or a KeepingCSVLogger writing
    `<train_dir>/logs/metrics.csv`."""
    if logger is not None:
        return logger, []
    keeping = KeepingCSVLogger(train_dir, name="", version="logs")
    return keeping, [keeping.callback]


class KeepingCSVLogger(CSVLogger):
    """`CSVLogger` that keeps the rows of earlier runs up to the resumed checkpoint; pass `callback` to the
    Trainer with it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.callback = _TrimOnStart(self)

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment
