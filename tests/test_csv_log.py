"""plumbing/csv_log.py: a resumed training keeps the metrics rows of its earlier runs, once each."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch

from plumbing.csv_log import KeepingCSVLogger

BATCHES = 4


class _Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch).pow(2).mean()
        self.log("loss", loss)
        self.log("epoch_seen", float(self.current_epoch))
        return loss

    def validation_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        self.log("val_epoch", float(self.current_epoch))

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(2, 2), batch_size=1)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(torch.randn(BATCHES, 2), batch_size=1)


def _fit(folder: Path, epochs: int, resume: Path | None = None) -> Path:
    logger = KeepingCSVLogger(folder, name="", version="logs")
    trainer = L.Trainer(max_epochs=epochs, logger=logger, callbacks=[logger.callback], log_every_n_steps=1,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(_Tiny(), ckpt_path=resume)
    trainer.save_checkpoint(folder / f"epoch{epochs}.ckpt")
    return folder / f"epoch{epochs}.ckpt"


def _epochs(folder: Path) -> list[int]:
    """The epoch of each training row; each epoch's validation row must be there once too."""
    rows = list(csv.DictReader((folder / "logs" / "metrics.csv").open()))
    trained = [int(float(row["epoch_seen"])) for row in rows if row["epoch_seen"]]
    assert [int(float(row["val_epoch"])) for row in rows if row["val_epoch"]] == sorted(set(trained))
    return trained


def test_a_resumed_training_keeps_the_rows_before_its_checkpoint_once(tmp_path):
    two = _fit(tmp_path, 2)
    assert _epochs(tmp_path) == [0] * BATCHES + [1] * BATCHES
    _fit(tmp_path, 3, resume=two)
    assert _epochs(tmp_path) == [0] * BATCHES + [1] * BATCHES + [2] * BATCHES
    # resumed again from epoch 2's end (as after a crash in epoch 3): epoch 3's rows are logged anew, once
    _fit(tmp_path, 4, resume=two)
    assert _epochs(tmp_path) == [0] * BATCHES + [1] * BATCHES + [2] * BATCHES + [3] * BATCHES


def test_a_fresh_training_starts_a_fresh_file(tmp_path):
    _fit(tmp_path, 2)
    _fit(tmp_path, 1)
    assert _epochs(tmp_path) == [0] * BATCHES
