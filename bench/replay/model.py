"""The replay model: MAL's spec, space and files, but each trial's training is a Lightning run of a
one-parameter module whose validation reports the surrogate's value for the trial's values at that epoch.

Everything around the training is the product's: the searchers, schedulers, checkpoints Tune restores
(a paused HyperBand trial resumes at its epoch), the study folder, MLflow, promotion. What the replay
cannot reproduce: noise between two runs of the same values (the surrogate is deterministic) and a PBT
exploit's history (the surrogate sees only the values a trial has now).

`--model bench.replay.model:COCO128` (or `:DEMO`) names it; the curves file of that set must exist.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import sklearn.ensemble  # noqa: F401  the promoter imports this module ahead: unpickling the forest is then quick

from automl.registry import get_model
from bench.replay.curves import curves_path, load_curves
from bench.replay.surrogate import Surrogate, fit_surrogate
from plumbing.fields import value_at

REPLAY_FILE = "replay.json"  # what a replay checkpoint holds beside Lightning's state: values, epoch, metric


@functools.cache
def surrogate(data_set: str) -> Surrogate:
    """The surrogate of the set's curves with the kind the recording chose; fitted once per curves file and
    kept pickled in the temp folder, since every study's trial actors and promoter are new processes."""
    path = curves_path(data_set)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = Path(tempfile.gettempdir()) / "automl-replay" / f"{data_set}-{digest}.pkl"
    if cached.is_file():
        return pickle.loads(cached.read_bytes())
    curves = load_curves(path)
    fitted = fit_surrogate(curves, kind=curves.doc.get("surrogate", {}).get("kind"))[0]
    cached.parent.mkdir(parents=True, exist_ok=True)
    staged = cached.with_suffix(f".{os.getpid()}.tmp")
    staged.write_bytes(pickle.dumps(fitted))
    os.replace(staged, cached)  # two processes fitting at once write the same bytes; either one wins
    return fitted


def _values(spec: Any, model: Surrogate) -> dict[str, Any]:
    return {p.name: value_at(spec, p.name) for p in model.params}


def _replay_fit(data_set: str, spec: Any, callbacks: Sequence[Any] = (), enable_progress_bar: bool = False, **_: Any) -> Any:
    import lightning as L
    import torch

    from bench.common import quiet_lightning
    from mal.names import BEST_FILE, LATEST_FILE
    from plumbing.lightning_run import FitResult

    quiet_lightning()
    model = surrogate(data_set)
    values = _values(spec, model)
    metric = model.curves.metric
    train_dir = spec.output_dir("train")
    train_dir.mkdir(parents=True, exist_ok=True)

    class Replayed(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            return (self.weight - batch[0]).pow(2).sum()

        def validation_step(self, batch: Any, index: int) -> None:
            self.log(metric, model.predict(values, self.current_epoch + 1), batch_size=1)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class KeepCheckpoints(L.Callback):
        """MAL's files: the best validation so far and the latest state, which a restored trial resumes from."""

        best = None

        def on_validation_end(self, trainer: Any, module: Any) -> None:
            value = float(trainer.callback_metrics[metric])
            better = self.best is None or (value > self.best if model.curves.mode == "max" else value < self.best)
            if better and not trainer.sanity_checking:
                self.best = value
                trainer.save_checkpoint(train_dir / BEST_FILE)
                state = {"values": values, "epoch": trainer.current_epoch + 1, metric: value}
                (train_dir / REPLAY_FILE).write_text(json.dumps(state))

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            trainer.save_checkpoint(train_dir / LATEST_FILE)

    keep = KeepCheckpoints()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1, 1)), batch_size=1)
    trainer = L.Trainer(
        max_epochs=spec.train.num_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=enable_progress_bar, num_sanity_val_steps=0,
        callbacks=[keep, *callbacks],  # ours first: the best file exists before the report that may stop it
    )
    latest = train_dir / LATEST_FILE
    trainer.fit(Replayed(), data, data, ckpt_path=str(latest) if latest.is_file() else None)
    return FitResult(train_dir, trainer.current_epoch, keep.best if keep.best is not None else float("nan"),
                     train_dir / BEST_FILE, metric)


def _replay_evaluate(data_set: str, spec: Any) -> tuple[dict[str, float], Path]:
    """The surrogate's value of the checkpoint's values at the checkpoint's epoch, as metrics.json."""
    model = surrogate(data_set)
    state = json.loads((Path(spec.evaluate.checkpoint).parent / REPLAY_FILE).read_text())
    metrics = {model.curves.metric: model.predict(state["values"], state["epoch"]), "epoch": state["epoch"]}
    out = spec.output_dir("evaluate")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "metrics.json"
    path.write_text(json.dumps(metrics))
    return metrics, path


def export_weights(checkpoint_path: str | Path, target: str | Path) -> Path:
    """The checkpoint as it is, with its replay state beside it (promotion evaluates the exported copy)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint_path, target)
    state = Path(checkpoint_path).parent / REPLAY_FILE
    if state.is_file():
        shutil.copyfile(state, target.parent / REPLAY_FILE)
    return target


fit_coco128 = functools.partial(_replay_fit, "coco128-seg")
fit_demo = functools.partial(_replay_fit, "demo")
evaluate_coco128 = functools.partial(_replay_evaluate, "coco128-seg")
evaluate_demo = functools.partial(_replay_evaluate, "demo")


def _replay_model(data_set: str, slug: str) -> Any:
    mal = get_model("mal")
    return dataclasses.replace(
        mal, name=f"replay-{slug}", registered_name=f"replay-{slug}", ref=f"{__name__}:{slug.upper()}",
        check_inputs=lambda spec: None,  # nothing is read: the curves stand in for the data
        eval_set=lambda spec: f"replay-{data_set}",
        metrics={"mIoU": "max"},
        fit=f"{__name__}:fit_{slug}", evaluate=f"{__name__}:evaluate_{slug}", export_weights=f"{__name__}:export_weights",
        baselines={}, fatal_errors=(),
    )


COCO128 = _replay_model("coco128-seg", "coco128")
DEMO = _replay_model("demo", "demo")
