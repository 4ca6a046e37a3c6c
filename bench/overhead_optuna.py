"""The overhead floor: a plain Optuna study (TPE) calling the fixed-cost workload in-process.

Run as `python -m bench.overhead_optuna ...` by as many processes as trials should run at once; they share
one JournalStorage file, Optuna's documented way to run a study in parallel.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import optuna
from lightning.pytorch.callbacks import Callback

from bench.workload import fit, searched_ranges
from mal.spec import load_spec, with_values


def suggest(trial: optuna.Trial, name: str, p: dict[str, Any]) -> Any:
    if p["type"] == "int":
        return trial.suggest_int(name, int(p["low"]), int(p["high"]))
    return trial.suggest_float(name, p["low"], p["high"], log=p.get("log", False))


class ReportToOptuna(Callback):
    """The minimal per-epoch report, so the floor does what any Optuna user's loop does."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_validation_end(self, trainer, pl_module) -> None:
        if "mIoU" in trainer.callback_metrics:
            self.trial.report(float(trainer.callback_metrics["mIoU"]), trainer.current_epoch + 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--storage", required=True, help="journal file shared by all processes")
    parser.add_argument("--trials", required=True, type=int, help="trials this process runs")
    parser.add_argument("--epochs", required=True, type=int)
    args = parser.parse_args()

    base = load_spec(args.spec)
    ranges = searched_ranges()

    def objective(trial: optuna.Trial) -> float:
        values = {name: suggest(trial, name, p) for name, p in ranges.items()}
        values |= {"results_dir": str(args.out / "trials" / f"{trial.number:03d}"), "train.num_epochs": args.epochs}
        return fit(with_values(base, values), callbacks=[ReportToOptuna(trial)], enable_progress_bar=False).best_metric

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(args.storage))
    study = optuna.create_study(
        study_name="overhead-floor", storage=storage, direction="maximize",
        sampler=optuna.samplers.TPESampler(), load_if_exists=True,
    )
    study.optimize(objective, n_trials=args.trials)


if __name__ == "__main__":
    main()
