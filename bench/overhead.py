"""Benchmark 1, overhead: what running a study costs beyond its training work.

The same study of the fixed-cost workload (bench/workload.py: trials x epochs x epoch_seconds of work,
`concurrency` trials at once) is run three ways, each a fresh Python process so imports count alike:
a plain Optuna loop in `concurrency` processes (the floor), Ray Tune with its defaults, and `automl run`.
Each is reported as wall time / ideal time, ideal = total work / concurrency. Start-up latency comes from
the timestamps the workload writes per trial: how long after a slot frees the next trial trains its first step.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.common import ROOT, bench_env, bin_path, print_table, run_logged, tail, write_result
from bench.workload import EPOCH_SECONDS_ENV, SEARCHED, TIMING_FILE

NAME = "overhead"
DATA: tuple[str, ...] = ()  # the workload reads no images; a tiny synthetic set satisfies the spec's paths
FULL = {"trials": 16, "epochs": 4, "epoch_seconds": 2.5}
QUICK = {"trials": 4, "epochs": 2, "epoch_seconds": 1.0}
GOAL_AUTOML = 1.10
RUNNERS = ("optuna", "raytune_default", "automl")


@dataclass
class TrialTimes:
    fit_start: float
    first_step: float
    end: float
    epochs: int


def ideal_seconds(trials: int, epochs: int, epoch_seconds: float, concurrency: int) -> float:
    """Total work divided by how many trials run at once: the wall time of a study with no overhead."""
    return trials * epochs * epoch_seconds / concurrency


def wall_over_ideal(wall: float, trials: int, epochs: int, epoch_seconds: float, concurrency: int) -> float:
    return wall / ideal_seconds(trials, epochs, epoch_seconds, concurrency)


def read_trial_times(folder: Path) -> list[TrialTimes]:
    """One entry per trial folder; a resumed trial's segments are joined (first start, last end, all epochs)."""
    trials = []
    for path in sorted(folder.rglob(TIMING_FILE)):
        runs = json.loads(path.read_text())
        steps = [r["first_step"] for r in runs if r["first_step"] is not None]
        if steps:
            trials.append(TrialTimes(runs[0]["fit_start"], min(steps), runs[-1]["end"], sum(len(r["epoch_ends"]) for r in runs)))
    return trials


def startup_latency(trials: list[TrialTimes], launched: float, concurrency: int) -> dict[str, float | None]:
    """Per trial, the gap between a free slot and its first training step.

    Slots start free at launch; trials take them in order of their first step, each the slot that freed
    earliest. The first wave's gap includes process start, imports and cluster start ("first_trial_s");
    later gaps are the per-trial cost of starting a trial ("trial_startup_*").
    """
    slots = [launched] * concurrency
    first_wave, later = [], []
    for t in sorted(trials, key=lambda t: t.first_step):
        free = heapq.heappop(slots)
        (first_wave if free == launched else later).append(t.first_step - free)
        heapq.heappush(slots, t.end)
    return {
        "first_trial_s": min(first_wave) if first_wave else None,
        "trial_startup_median_s": statistics.median(later) if later else None,
        "trial_startup_max_s": max(later) if later else None,
    }


def in_trial_overhead(trials: list[TrialTimes], epoch_seconds: float) -> float | None:
    """Seconds per epoch a trial spends beyond its work, from its first step to its end (reports, checkpoints)."""
    per_epoch = [(t.end - t.first_step - t.epochs * epoch_seconds) / t.epochs for t in trials if t.epochs]
    return statistics.mean(per_epoch) if per_epoch else None


def _write_spec(folder: Path, epochs: int) -> Path:
    from mal.synthetic import write_demo_dataset

    data = folder / "data"
    write_demo_dataset(data, seed=0, num_train=2, num_val=1, image_size=64)
    spec = {
        "dataset": {
            "train_ann_path": str(data / "train" / "annotations.json"),
            "train_img_dir": str(data / "train" / "images"),
            "val_ann_path": str(data / "val" / "annotations.json"),
            "val_img_dir": str(data / "val" / "images"),
            "min_obj_size": 16,  # the tiny set's boxes must pass the training-box check
        },
        "train": {"num_gpus": 0, "num_epochs": epochs},
        "automl": {"hyperparameters": list(SEARCHED)},
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _optuna_floor(spec: Path, out: Path, trials: int, epochs: int, concurrency: int, env: dict[str, str]) -> None:
    """`concurrency` processes share the study's journal; trials are split between them."""
    shares = [trials // concurrency + (i < trials % concurrency) for i in range(concurrency)]
    logs = [out.parent / f"optuna-{i}.log" for i in range(concurrency)]
    procs = []
    for share, log in zip(shares, logs, strict=True):
        cmd = [sys.executable, "-m", "bench.overhead_optuna", "--spec", str(spec), "--out", str(out),
               "--storage", str(out.parent / "optuna-journal.log"), "--trials", str(share), "--epochs", str(epochs)]
        with log.open("w") as handle:
            procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT))
    for proc, log in zip(procs, logs, strict=True):
        if proc.wait():
            raise RuntimeError(f"the Optuna floor process exited {proc.returncode}; last lines of {log}:\n{tail(log)}")


def _measure(runner: str, folder: Path, spec: Path, s: dict[str, Any], concurrency: int) -> dict[str, Any]:
    out = folder / runner
    env = {**bench_env(), EPOCH_SECONDS_ENV: str(s["epoch_seconds"])}
    trials, epochs = s["trials"], s["epochs"]
    launched = time.time()
    if runner == "optuna":
        _optuna_floor(spec, out, trials, epochs, concurrency, env)
    elif runner == "raytune_default":
        run_logged([sys.executable, "-m", "bench.overhead_raytune", "--spec", str(spec), "--out", str(out),
                    "--trials", str(trials), "--epochs", str(epochs)], folder / f"{runner}.log", env)
    else:
        run_logged([bin_path("automl"), "run", "--model", "bench.fixed_cost:FIXED_COST", "-e", str(spec),
                    "automl.algorithm=bayesian", f"automl.max_trials={trials}", f"automl.max_epochs={epochs}",
                    "automl.cpus_per_trial=1", "automl.gpus_per_trial=0", f"results_dir={out}",
                    "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"], folder / f"{runner}.log", env)
    wall = time.time() - launched
    times = read_trial_times(out)
    return {
        "wall_s": round(wall, 2),
        "wall_over_ideal": round(wall_over_ideal(wall, trials, epochs, s["epoch_seconds"], concurrency), 3),
        "trials_run": len(times),
        "epochs_run": sum(t.epochs for t in times),
        **{k: _round(v) for k, v in startup_latency(times, launched, concurrency).items()},
        "in_trial_overhead_per_epoch_s": _round(in_trial_overhead(times, s["epoch_seconds"])),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def run(quick: bool) -> None:
    s = QUICK if quick else FULL
    concurrency = os.cpu_count() or 1
    ideal = ideal_seconds(s["trials"], s["epochs"], s["epoch_seconds"], concurrency)
    folder = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    spec = _write_spec(folder, s["epochs"])
    results = {}
    for runner in RUNNERS:
        results[runner] = _measure(runner, folder, spec, s, concurrency)
    shutil.rmtree(folder, ignore_errors=True)  # kept when a runner fails: its log is named in the error

    figures: dict[str, Any] = {"ideal_s": ideal, **{f"{r}_wall_over_ideal": results[r]["wall_over_ideal"] for r in RUNNERS}}
    figures["automl_goal"] = GOAL_AUTOML
    figures["automl_meets_goal"] = results["automl"]["wall_over_ideal"] <= GOAL_AUTOML
    figures["runs"] = results
    columns = ["runner", "wall s", "wall / ideal", "trials", "epochs", "first trial s", "trial start-up s (median)",
               "start-up max s", "in-trial overhead s/epoch"]
    rows = [
        [r, x["wall_s"], x["wall_over_ideal"], x["trials_run"], x["epochs_run"], x["first_trial_s"],
         x["trial_startup_median_s"], x["trial_startup_max_s"], x["in_trial_overhead_per_epoch_s"]]
        for r, x in results.items()
    ]
    print_table(
        f"overhead: {s['trials']} trials x {s['epochs']} epochs x {s['epoch_seconds']} s, {concurrency} at once "
        f"(ideal {ideal:.1f} s){' [quick]' if quick else ''}",
        columns, rows,
    )
    verdict = "meets" if figures["automl_meets_goal"] else "misses"
    print(f"automl wall/ideal {results['automl']['wall_over_ideal']:.2f}: {verdict} the goal of <= {GOAL_AUTOML}")
    write_result(NAME, {**s, "concurrency": concurrency, "searched": list(SEARCHED), "automl_algorithm": "bayesian",
                        "optuna_sampler": "TPE", "raytune_searcher": "OptunaSearch (defaults)"}, figures, quick)
