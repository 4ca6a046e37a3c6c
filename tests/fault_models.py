"""Test-only tunable models: real MAL trials with a fault injected from outside the product.

`automl run --model fault_models:FAULTY` (with this folder on PYTHONPATH, which Ray workers inherit) trains
MAL as usual, except that each trial takes the next fault of $FAULT_PLAN (comma-separated, in trial start
order; claims are files in $FAULT_DIR so concurrent trials never take the same one):

- raise        the trial raises in its first epoch
- nan          the loss turns NaN in the second epoch
- oom          the training step runs out of memory
- worker_loss  the worker process is killed after its first epoch was reported (once; the retry trains on)
- none         a healthy trial
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from automl.registry import get_model

FAULTY = dataclasses.replace(get_model("mal"), name="mal_faulty", fit="fault_models:faulty_fit")
ALWAYS_RAISING = dataclasses.replace(get_model("mal"), name="mal_raising", fit="fault_models:raising_fit")


def _claim(trial_dir: Path) -> str:
    """This trial's fault: the first unclaimed one of the plan, kept across the trial's retries."""
    mine = trial_dir / "fault.json"
    if mine.is_file():
        return json.loads(mine.read_text())["fault"]
    shared = Path(os.environ["FAULT_DIR"])
    fault = "none"
    for index, planned in enumerate(os.environ["FAULT_PLAN"].split(",")):
        try:
            os.close(os.open(shared / f"claim-{index}", os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        fault = planned
        break
    mine.parent.mkdir(parents=True, exist_ok=True)
    mine.write_text(json.dumps({"fault": fault}))
    return fault


class _Inject(Callback):
    def __init__(self, fault: str, trial_dir: Path) -> None:
        self.fault, self.trial_dir = fault, trial_dir

    def on_train_start(self, trainer, pl_module) -> None:
        starts = self.trial_dir / "attempt_starts.json"
        seen = json.loads(starts.read_text()) if starts.is_file() else []
        starts.write_text(json.dumps([*seen, trainer.current_epoch]))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.fault == "raise":
            raise RuntimeError("injected fault: the data source went away")
        if self.fault == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        if self.fault == "nan" and trainer.current_epoch >= 1:
            pl_module.net.student.register_forward_hook(lambda module, args, out: _poison(out))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        died = self.trial_dir / "died_once"
        if self.fault == "worker_loss" and not died.exists():
            died.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def _poison(out: Any) -> Any:
    if isinstance(out, torch.Tensor):
        return out * float("nan")
    if isinstance(out, dict):
        return {k: _poison(v) for k, v in out.items()}
    if isinstance(out, tuple | list):
        return type(out)(_poison(v) for v in out)
    return out


def faulty_fit(spec: Any, callbacks: Any = (), **kwargs: Any) -> Any:
    from mal.runner import fit

    trial_dir = Path(spec.results_dir)
    # after the trial's own reporting callback, so a killed worker has reported its first epoch
    return fit(spec, callbacks=[*callbacks, _Inject(_claim(trial_dir), trial_dir)], **kwargs)


def raising_fit(spec: Any, callbacks: Any = (), **kwargs: Any) -> Any:
    raise RuntimeError("injected fault: every trial breaks")
