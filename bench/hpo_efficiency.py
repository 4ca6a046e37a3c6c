"""Benchmark 2, hpo_efficiency: how many training epochs each search algorithm spends to find a good MAL.

Real `automl run` studies of the CPU-sized MAL on coco128-seg (train -> val) with asha, bayesian and
random at the same budget of epochs (asha gets more trials, since it stops most of them early), over
several seeds. The per-epoch validation mIoU of every trial is read back from the study's MLflow runs
(one child run per trial, mIoU at every epoch, logged as results arrive), ordered in time: that gives
the best-mIoU-so-far curve against cumulative epochs, and the epochs each algorithm needs to reach the
best that random search found within the whole budget.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, bin_path, console, data_dir, print_table, run_logged, write_result

NAME = "hpo_efficiency"
DATA = ("coco128-seg",)
SPEC = ROOT / "experiments" / "mal_coco128.yaml"
# BENCH_HPO_ALGORITHMS=asha,random runs a subset (random must stay in: every figure is relative to it)
ALGORITHMS = tuple(os.environ.get("BENCH_HPO_ALGORITHMS", "asha,bayesian,random").split(","))
FULL = {
    "seeds": [0, 1, 2], "trials": 6, "max_epochs": 4, "grace_period": 1, "reduction_factor": 2,
    "overrides": ["dataset.crop_size=64", "train.crf_num_iter=20", "dataset.min_obj_size=4096"],
}
QUICK = {
    "seeds": [0], "trials": 2, "max_epochs": 2, "grace_period": 1, "reduction_factor": 2,
    "overrides": ["dataset.crop_size=32", "train.crf_num_iter=10", "dataset.min_obj_size=16384", "train.batch_size=16"],
}
GOAL_RATIO = 1 / 3  # the default algorithm should need at most a third of random search's epochs


def default_algorithm() -> str:
    from mal.spec import ExperimentSpec

    return ExperimentSpec().automl.algorithm


def asha_epochs_per_trial(max_epochs: int, grace_period: int, reduction_factor: int) -> float:
    """Expected epochs of one ASHA trial: every trial trains to the first rung, 1/eta of them to the next..."""
    rungs, rung = [], grace_period
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    rungs.append(max_epochs)
    expected, previous = 0.0, 0
    for k, r in enumerate(rungs):
        expected += (r - previous) / reduction_factor**k
        previous = r
    return expected


def best_so_far(values_in_time_order: list[float]) -> list[float]:
    """Entry i: the best mIoU after i + 1 epochs trained, all trials together."""
    curve, best = [], -math.inf
    for value in values_in_time_order:
        best = max(best, value)
        curve.append(best)
    return curve


def epochs_to_reach(curve: list[float], target: float) -> int | None:
    """Cumulative epochs after which the curve first reaches `target`; None if it never does."""
    return next((i + 1 for i, value in enumerate(curve) if value >= target), None)


def epoch_results(tracking_uri: str, experiment: str) -> list[float]:
    """Every trial's per-epoch mIoU from the study's MLflow child runs, in the order the driver logged them."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RuntimeError(f"no MLflow experiment {experiment!r} at {tracking_uri}")
    runs = [r for r in client.search_runs([found.experiment_id], max_results=1000) if "mlflow.parentRunId" in r.data.tags]
    events = [(m.timestamp, m.step, m.value) for r in runs for m in client.get_metric_history(r.info.run_id, "mIoU")]
    return [value for _, _, value in sorted(events)]


def run_study(algorithm: str, seed: int, trials: int, s: dict[str, Any], folder: Path) -> dict[str, Any]:
    coco = data_dir() / "coco128-seg"
    experiment = f"bench-hpo-{algorithm}-seed{seed}"
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    start = time.time()
    run_logged([
        bin_path("automl"), "run", "--model", "mal", "-e", str(SPEC),
        f"dataset.train_ann_path={coco / 'annotations' / 'train.json'}", f"dataset.train_img_dir={coco / 'images'}",
        f"dataset.val_ann_path={coco / 'annotations' / 'val.json'}", f"dataset.val_img_dir={coco / 'images'}",
        *s["overrides"], f"automl.algorithm={algorithm}", f"automl.max_trials={trials}",
        f"automl.max_epochs={s['max_epochs']}", f"automl.grace_period={s['grace_period']}",
        f"automl.reduction_factor={s['reduction_factor']}", f"automl.seed={seed}", f"train.seed={seed}",
        "automl.cpus_per_trial=1", "automl.gpus_per_trial=0", f"automl.experiment_name={experiment}", f"results_dir={folder / experiment}",
        "--tracking-uri", uri,
    ], folder / f"{experiment}.log")
    values = epoch_results(uri, experiment)
    if not values:
        raise RuntimeError(f"study {experiment} logged no per-epoch mIoU to MLflow ({uri}); see {folder / experiment}")
    with (folder / experiment / "leaderboard.csv").open() as board:
        leaderboard_epochs = sum(int(row["epochs"]) for row in csv.DictReader(board))
    return {"trials": trials, "epochs_run": len(values), "epochs_in_leaderboard": leaderboard_epochs,
            "seconds": round(time.time() - start, 1), "values": values}


def summarise(curves: dict[str, list[list[float]]], budget: int, default: str) -> dict[str, Any]:
    """Per algorithm: final best within the budget, epochs to reach random's final best (per seed), mean curve."""
    seeds = len(curves["random"])
    targets = [curve[:budget][-1] for curve in curves["random"]]
    out: dict[str, Any] = {}
    for algorithm, per_seed in curves.items():
        clipped = [curve[:budget] for curve in per_seed]
        reach = [epochs_to_reach(clipped[i], targets[i]) for i in range(seeds)]
        mean_curve = [
            round(statistics.mean(c[e] for c in clipped if len(c) > e), 4) for e in range(max(map(len, clipped)))
        ]
        out[algorithm] = {
            "final_best_mean": round(statistics.mean(c[-1] for c in clipped), 4),
            "final_best_per_seed": [round(c[-1], 4) for c in clipped],
            "epochs_to_reach_random_best": reach,
            "mean_best_so_far_curve": mean_curve,
        }
    random_reach, default_reach = out["random"]["epochs_to_reach_random_best"], out[default]["epochs_to_reach_random_best"]
    ratios = [None if d is None else d / r for d, r in zip(default_reach, random_reach, strict=True)]
    known = [r for r in ratios if r is not None]
    out["default_algorithm"] = default
    out["default_over_random_epochs"] = [None if r is None else round(r, 3) for r in ratios]
    out["default_over_random_epochs_mean"] = round(statistics.mean(known), 3) if known else None
    out["default_meets_goal"] = bool(known) and len(known) == len(ratios) and statistics.mean(known) <= GOAL_RATIO
    return out


def run(quick: bool) -> None:
    if "random" not in ALGORITHMS or not set(ALGORITHMS) <= {"asha", "bayesian", "random"}:
        raise ValueError(f"BENCH_HPO_ALGORITHMS: {','.join(ALGORITHMS)}: choose among asha, bayesian, random, with random")
    s = QUICK if quick else FULL
    budget = s["trials"] * s["max_epochs"]
    per_asha_trial = asha_epochs_per_trial(s["max_epochs"], s["grace_period"], s["reduction_factor"])
    trials = {"asha": math.ceil(budget / per_asha_trial), "bayesian": s["trials"], "random": s["trials"]}
    default = default_algorithm()
    folder = Path(tempfile.mkdtemp(prefix="bench-hpo-"))
    studies: dict[str, list[dict[str, Any]]] = {a: [] for a in ALGORITHMS}
    for seed in s["seeds"]:
        for algorithm in ALGORITHMS:
            console.print(f"{algorithm}, seed {seed}: {trials[algorithm]} trials ...")
            studies[algorithm].append(run_study(algorithm, seed, trials[algorithm], s, folder))
    shutil.rmtree(folder, ignore_errors=True)

    curves = {a: [best_so_far(study["values"]) for study in runs] for a, runs in studies.items()}
    summary = summarise(curves, budget, default)
    rows = [
        [a, trials[a], statistics.mean(x["epochs_run"] for x in studies[a]), summary[a]["final_best_mean"],
         ", ".join(str(e) if e is not None else "never" for e in summary[a]["epochs_to_reach_random_best"]),
         statistics.mean(x["seconds"] for x in studies[a])]
        for a in ALGORITHMS
    ]
    print_table(
        f"hpo_efficiency: budget {budget} epochs per study, {len(s['seeds'])} seed(s){' [quick]' if quick else ''}",
        ["algorithm", "trials", "epochs run (mean)", "best mIoU in budget (mean)", "epochs to reach random's best, per seed",
         "study s (mean)"], rows,
    )
    ratio = summary["default_over_random_epochs_mean"]
    verdict = "meets" if summary["default_meets_goal"] else "misses"
    console.print(f"default ({default}) needs {'—' if ratio is None else f'{ratio:.2f}'} x random's epochs: "
                  f"{verdict} the goal of <= {GOAL_RATIO:.2f}")
    figures = {**summary, "budget_epochs": budget, "studies": studies}
    write_result(NAME, {**s, "spec": str(SPEC.relative_to(ROOT)), "trials_per_algorithm": trials}, figures, quick)
