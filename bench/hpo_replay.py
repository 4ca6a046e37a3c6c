"""`python -m bench hpo_efficiency --replay`: search efficiency over many seeds on the real engine, each
trial answered by a surrogate of recorded MAL learning curves (bench/replay, `python -m bench record_curves`).

Every algorithm runs `automl.study.run_study` in this process, with Ray started once: Ray Tune, our searchers
and schedulers, the study folder, MLflow and promotion are the product's; only the training is replayed.
All algorithms get the same budget of epochs per study (the best-so-far curve is cut there), the same trials
at once as the recording, and warm starts off, so that what is compared is the search itself.

Figures per data set and algorithm:
- epochs_to_random_best: the median over seeds of (epochs it needs to reach random search's final best of
  the same seed) / (epochs random search needed to reach it); null when the median seed never reaches it;
- final regret at the budget (the surrogate's best over 20,000 random draws at every epoch, minus the best
  the study found), its mean with a 95% bootstrap interval over seeds;
- the mean best-so-far curve against epochs.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, DataMissing, console, fmt, print_table, write_result
from bench.hpo_efficiency import (
    asha_epochs_per_trial,
    best_so_far,
    default_algorithm,
    epoch_results,
    epochs_to_reach,
)
from bench.replay.curves import curves_path

NAME = "hpo_efficiency_replay"
DATA = ()  # the recorded curves travel with the repository (bench/data); no photo is read
MODELS = {"coco128-seg": "bench.replay.model:COCO128", "demo": "bench.replay.model:DEMO"}
# default: every set whose curves have been recorded
SETS = tuple(os.environ.get("BENCH_REPLAY_SETS", ",".join(s for s in MODELS if curves_path(s).is_file())).split(","))
# grid search is left out: it needs a step on every float range, which these spaces do not have
ALGORITHMS = tuple(os.environ.get("BENCH_REPLAY_ALGORITHMS", "asha,bayesian,hyperband,bohb,dehb,pbt,random").split(","))
FULL = {"seeds": 20, "full_trials": 16, "concurrent": 2}
QUICK = {"seeds": 2, "full_trials": 4, "concurrent": 2}
GOAL_RATIO = 1 / 3
OPTIMUM_DRAWS = 20_000


def trials_for(algorithm: str, full_trials: int, max_epochs: int, grace: int, eta: int) -> int:
    """Trials that spend at least the budget: full-length ones for the FIFO searchers and PBT's population,
    the expected successive-halving share for the early-stopping ones (their curve is cut at the budget)."""
    if algorithm in ("asha", "hyperband", "bohb", "dehb"):
        return math.ceil(full_trials * max_epochs / asha_epochs_per_trial(max_epochs, grace, eta) * 1.25)
    return full_trials


def optimum(surrogate: Any, seed: int = 0) -> float:
    """The best the surrogate answers over many random draws of the space and the recorded values, at any
    epoch: regret's zero."""
    rng = np.random.default_rng(seed)
    sign = 1 if surrogate.curves.mode == "max" else -1
    draws = [surrogate.curves.space.random_sample(rng) for _ in range(OPTIMUM_DRAWS)]
    draws += [c["params"] for c in surrogate.curves.configs]
    return sign * float((sign * surrogate.curves_of(draws)).max())


def bootstrap_interval(values: list[float], seed: int = 0, draws: int = 5000) -> list[float]:
    rng = np.random.default_rng(seed)
    x = np.asarray(values)
    means = x[rng.integers(0, len(x), size=(draws, len(x)))].mean(1)
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


_last_start = [0.0]


def run_one_study(model: Any, spec_path: Path, overrides: list[str], folder: Path, tag: str) -> tuple[list[float], float]:
    """One study of the replay model in this process; its per-epoch metric values in the order they arrived."""
    from io import StringIO

    from rich.console import Console

    from automl.settings import study_config
    from automl.study import run_study, study_space

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # Ray Tune stages a driver's files under a folder named by the start's second and the experiment's name
    # (ours is always "ray"): two studies started in the same second would share, and one remove, it
    time.sleep(max(0.0, 1.05 - (time.time() - _last_start[0])))
    _last_start[0] = time.time()
    spec = model.load_spec(spec_path, [*overrides, f"automl.experiment_name={tag}", f"automl.tracking_uri={uri}",
                                       f"results_dir={folder / tag}"])
    quiet = not os.environ.get("BENCH_REPLAY_VERBOSE")  # 1: every study's console, as `automl run` prints it
    start = time.time()
    run_study(model, spec, study_space(model, spec, study_config(spec)), folder / tag, Console(file=StringIO()) if quiet else Console())
    return epoch_results(uri, tag), time.time() - start


def summarise_set(curves: dict[str, list[list[float]]], budget: int, best_possible: float, default: str) -> dict[str, Any]:
    targets = [c[:budget][-1] for c in curves["random"]]
    random_reach = [epochs_to_reach(c[:budget], t) for c, t in zip(curves["random"], targets, strict=True)]
    out: dict[str, Any] = {}
    for algorithm, per_seed in curves.items():
        clipped = [c[:budget] for c in per_seed]
        ratios = []
        for c, target, r in zip(clipped, targets, random_reach, strict=True):
            reach = epochs_to_reach(c, target)
            ratios.append(math.inf if reach is None else reach / r)
        median = statistics.median(ratios)
        regret = [best_possible - c[-1] for c in clipped]
        out[algorithm] = {
            "epochs_to_random_best": None if math.isinf(median) else round(median, 3),
            "epochs_to_random_best_per_seed": [None if math.isinf(r) else round(r, 3) for r in ratios],
            "final_regret_mean": round(statistics.mean(regret), 4),
            "final_regret_interval95": bootstrap_interval(regret),
            "final_best_mean": round(statistics.mean(c[-1] for c in clipped), 4),
            "epochs_run_mean": round(statistics.mean(len(c) for c in per_seed), 1),
            "mean_best_so_far_curve": [
                round(statistics.mean(c[e] for c in clipped if len(c) > e), 4) for e in range(max(map(len, clipped)))
            ],
            "curves": [[round(v, 4) for v in c] for c in clipped],
        }
    ratio = out[default]["epochs_to_random_best"]
    out["default_meets_goal"] = ratio is not None and ratio <= GOAL_RATIO
    return out


def run(quick: bool) -> None:
    import ray

    from automl.registry import get_model
    from bench.replay.model import surrogate
    from plumbing.ray_session import connect_ray

    s = QUICK if quick else FULL
    missing = [name for name in SETS if name not in MODELS or not curves_path(name).is_file()]
    if missing:
        raise DataMissing(f"no recorded curves for {missing[0]!r}: {curves_path(missing[0])} "
                          f"(python -m bench record_curves, with BENCH_RECORD_SETS={missing[0]})")
    if "random" not in ALGORITHMS:
        raise ValueError("BENCH_REPLAY_ALGORITHMS must include random: every figure is relative to it")
    default = default_algorithm()
    figures: dict[str, Any] = {"seeds": s["seeds"], "default_algorithm": default, "primary_set": SETS[0], "sets": {}}
    settings: dict[str, Any] = {**s, "algorithms": ALGORITHMS, "sets": SETS, "warm_start": False}
    connect_ray()
    folder = Path(tempfile.mkdtemp(prefix="bench-replay-"))
    try:
        for data_set in SETS:
            model = get_model(MODELS[data_set])
            fitted = surrogate(data_set)
            curves_doc = fitted.curves.doc
            max_epochs = fitted.curves.max_epochs
            grace, eta = curves_doc["schedule"]["grace_period"], curves_doc["schedule"]["reduction_factor"]
            budget = s["full_trials"] * max_epochs
            best_possible = optimum(fitted)
            spec_path = ROOT / curves_doc["recipe"]["spec"]
            base = [*curves_doc["recipe"]["overrides"], f"automl.max_epochs={max_epochs}", f"automl.grace_period={grace}",
                    f"automl.reduction_factor={eta}", "automl.warm_start=false", "automl.cpus_per_trial=1",
                    "automl.gpus_per_trial=0", f"automl.max_concurrent={s['concurrent']}"]
            per_algorithm: dict[str, list[list[float]]] = {a: [] for a in ALGORITHMS}
            seconds: dict[str, list[float]] = {a: [] for a in ALGORITHMS}
            trials = {a: trials_for(a, s["full_trials"], max_epochs, grace, eta) for a in ALGORITHMS}
            for seed in range(s["seeds"]):
                for algorithm in ALGORITHMS:
                    tag = f"{data_set}-{algorithm}-{seed}"
                    overrides = [*base, f"automl.algorithm={algorithm}", f"automl.max_trials={trials[algorithm]}", f"automl.seed={seed}"]
                    values, took = run_one_study(model, spec_path, overrides, folder, tag)
                    per_algorithm[algorithm].append(best_so_far(values))
                    seconds[algorithm].append(took)
                    shutil.rmtree(folder / tag, ignore_errors=True)
                console.print(f"[dim]{data_set}: seed {seed} done ({sum(map(sum, seconds.values())):.0f} s of studies)[/]")
            summary = summarise_set(per_algorithm, budget, best_possible, default)
            figures["sets"][data_set] = {
                "budget_epochs": budget, "max_epochs": max_epochs, "trials_per_algorithm": trials,
                "optimum": round(best_possible, 4), "recorded_best": round(fitted.curves.best(), 4),
                "surrogate": curves_doc.get("surrogate"), "study_seconds_mean": {a: round(statistics.mean(v), 1) for a, v in seconds.items()},
                **summary,
            }
            rows = [[a, trials[a], summary[a]["epochs_run_mean"], summary[a]["final_best_mean"], summary[a]["final_regret_mean"],
                     "–".join(fmt(v) for v in summary[a]["final_regret_interval95"]), summary[a]["epochs_to_random_best"],
                     statistics.mean(seconds[a])] for a in ALGORITHMS]
            print_table(
                f"hpo_efficiency --replay, {data_set}: budget {budget} epochs, {s['seeds']} seeds{' [quick]' if quick else ''}",
                ["algorithm", "trials", "epochs run", "best in budget (mean)", "regret (mean)", "95% interval",
                 "epochs to random's best / random's (median)", "study s"], rows,
            )
            verdict = "meets" if summary["default_meets_goal"] else "misses"
            console.print(f"{data_set}: default ({default}) at {fmt(summary[default]['epochs_to_random_best'])} of random's epochs: "
                          f"{verdict} the goal of <= {GOAL_RATIO:.2f}")
    finally:
        ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    primary = figures["sets"][SETS[0]]  # the headline figures, per algorithm, are the first set's
    figures["epochs_to_random_best"] = {a: primary[a]["epochs_to_random_best"] for a in ALGORITHMS}
    figures["final_regret"] = {a: {"mean": primary[a]["final_regret_mean"], "interval95": primary[a]["final_regret_interval95"]}
                               for a in ALGORITHMS}
    figures["curves"] = {a: primary[a]["curves"] for a in ALGORITHMS}
    figures["default_meets_goal"] = primary["default_meets_goal"]
    write_result(NAME, settings, figures, quick)
