"""Benchmark 5, start-up: how long the command lines take to answer `--help`, a fresh process each time.

`automl --help` and `mal --help` import no torch, Ray, Optuna or MLflow (the suite checks the imports); this
measures the seconds, which depend on the machine and its load, against the goal of under 1 s.
"""

from __future__ import annotations

import statistics
import subprocess
import time

from bench.common import bench_env, bin_path, print_table, write_result

NAME = "startup"
DATA: tuple[str, ...] = ()
GOAL_SECONDS = 1.0
COMMANDS = (("automl", "--help"), ("mal", "--help"), ("automl", "run", "--help"))


def _seconds(command: tuple[str, ...]) -> float:
    started = time.perf_counter()
    subprocess.run([bin_path(command[0]), *command[1:]], env=bench_env(), capture_output=True, check=True, timeout=120)
    return time.perf_counter() - started


def run(quick: bool) -> None:
    runs = 3 if quick else 10
    figures = {}
    for command in COMMANDS:
        _seconds(command)  # the first run pays for a cold file cache, which a user's second call would not
        times = [_seconds(command) for _ in range(runs)]
        figures[" ".join(command)] = {"median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    rows = [[name, f["median_s"], f["max_s"], f["median_s"] < GOAL_SECONDS] for name, f in figures.items()]
    print_table(f"start-up: {runs} runs each, after one warm-up{' [quick]' if quick else ''}",
                ["command", "median s", "max s", f"median < {GOAL_SECONDS} s"], rows)
    write_result(NAME, {"runs": runs, "goal_seconds": GOAL_SECONDS}, figures, quick)
