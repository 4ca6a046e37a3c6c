"""A stop signal during a training command: training stops after its next optimizer step with the latest checkpoint
written there, so that the same command resumes exactly where it stopped (plumbing.signals has the handler).

The checkpoint is written from `on_train_batch_end`, where Lightning's step checkpoints are written too and
from where its loops resume without training a batch twice. Lightning's own SIGTERM handling is not used: it
can stop in the middle of a validation, whose metric a resume could not complete.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

from plumbing import signals


class StopAtStep(Callback):
    """Polls for a stop signal at every optimizer step; on one, writes the latest checkpoint and stops."""

    def __init__(self, latest: Path) -> None:
        self.latest = latest
        self.signum = 0  # the signal that stopped training (any rank's)
        self._step_before = 0

    def on_train_start(self, trainer, pl_module) -> None:
        signals.reclaim()  # Lightning's fit has just put its own SIGTERM handler in place

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step_before = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step_before:
            return  # gradients still accumulating: not a step boundary
        self.signum = _any_rank(trainer, signals.requested() or 0)
        if self.signum:
            trainer.save_checkpoint(self.latest, weights_only=False)  # every rank takes part; rank 0 writes, atomically
            raise SIGTERMException  # Lightning's graceful-exit exception: its loops tear down and re-raise it


def _any_rank(trainer: Any, signum: int) -> int:
    """The signal any DDP rank received, so that every rank stops at the same step (a signal may reach only
    rank 0). A single process decides alone, without a tensor (no device sync per step)."""
    if trainer.world_size == 1:
        return signum
    return int(trainer.strategy.reduce(torch.tensor(signum, device=trainer.strategy.root_device), reduce_op="max"))


def callbacks(latest: Path) -> list[Callback]:
    """StopAtStep under a command that handles stop signals; none in a Ray trial, which Tune stops itself."""
    return [StopAtStep(latest)] if signals.handling() else []


@contextmanager
def on_signal(trainer: Any) -> Iterator[None]:
    """Around `trainer.fit`: a stop signal ends it as `Interrupted`, whose line says what was kept. A signal
    that came before is raised at once, with nothing new to keep."""
    stop = next((c for c in trainer.callbacks if isinstance(c, StopAtStep)), None)
    with signals.deferred():
        try:
            yield
        except SIGTERMException:  # StopAtStep's stop, or Lightning's own in the moment before the first step
            if not (stop and stop.signum):
                raise signals.Interrupted(
                    signals.requested() or signal.SIGTERM,
                    "no step was saved; the same command resumes from the last periodic checkpoint",
                ) from None
            raise signals.Interrupted(
                stop.signum, f"saved {stop.latest} in epoch {trainer.current_epoch + 1} of {trainer.max_epochs}, after step "
                f"{trainer.global_step}; the same command resumes from there", echo=trainer.is_global_zero,
            ) from None
        except signals.Interrupted as exc:
            raise signals.Interrupted(
                exc.signum, "a second signal stopped it at once; the same command resumes from the last periodic checkpoint",
                echo=trainer.is_global_zero,  # one line for the command, not one per DDP rank
            ) from None
    if signals.requested():  # it came during the last validation: nothing was left to stop
        raise signals.Interrupted(
            signals.requested(), f"training had finished ({trainer.current_epoch} epochs); nothing was cut short",
            echo=trainer.is_global_zero,
        )
