"""Ray Tune as its documentation shows it, every setting at its default: a function trainable calling the
fixed-cost workload with Ray's own Lightning report-and-checkpoint callback, OptunaSearch, 1 CPU per trial.

Run as `python -m bench.overhead_raytune ...` (a fresh process, so its imports and `ray.init` count).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.pytorch_lightning import TuneReportCheckpointCallback
from ray.tune.search.optuna import OptunaSearch

from bench.workload import fit, searched_ranges
from mal.spec import load_spec, validate_dict, with_values


def tune_domain(p: dict[str, Any]) -> Any:
    if p["type"] == "int":
        return tune.randint(int(p["low"]), int(p["high"]) + 1)  # Tune's upper bound is exclusive
    return tune.loguniform(p["low"], p["high"]) if p.get("log") else tune.uniform(p["low"], p["high"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--trials", required=True, type=int)
    parser.add_argument("--epochs", required=True, type=int)
    args = parser.parse_args()
    base = load_spec(args.spec).to_dict()
    out, epochs = args.out.resolve(), args.epochs

    def trainable(config: dict[str, Any]) -> None:
        trial_out = out / "trials" / tune.get_context().get_trial_id()
        spec = with_values(validate_dict(base), {**config, "results_dir": str(trial_out), "train.num_epochs": epochs})
        fit(spec, callbacks=[TuneReportCheckpointCallback(metrics=["mIoU"])], enable_progress_bar=False)

    tuner = tune.Tuner(
        trainable,
        param_space={name: tune_domain(p) for name, p in searched_ranges().items()},
        tune_config=tune.TuneConfig(search_alg=OptunaSearch(), metric="mIoU", mode="max", num_samples=args.trials),
        run_config=tune.RunConfig(name="raytune", storage_path=str(out / "ray")),
    )
    tuner.fit()


if __name__ == "__main__":
    main()
