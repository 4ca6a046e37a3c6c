"""What every benchmark shares: where the data and results live, the machine it ran on, the result file,
and the table it prints."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATA_DIR_ENV = "BENCH_DATA_DIR"  # where coco128-seg/ and tiny-coco/ are; default ../shared/data
VERSIONED = ("torch", "lightning", "ray", "optuna", "mlflow", "timm", "opencv-python-headless")

# piped output (make bench | tee) gets room for the tables instead of 80 columns
console = Console(width=None if sys.stdout.isatty() else 150)


class DataMissing(Exception):
    """A benchmark's dataset is not where it should be: the run fails, it never skips."""


def quiet_lightning() -> None:
    """Lightning's banners and hints would bury the tables; its warnings that matter here are none of these."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    for text in ("does not have many workers", "LeafSpec", "exists and is not empty", "in eval mode",
                 "no `val_dataloader`", "litlogger"):
        warnings.filterwarnings("ignore", f".*{text}.*")


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or ROOT.parent / "shared" / "data")


def require_data(name: str) -> Path:
    """The folder of a shared dataset, or DataMissing naming where it was looked for."""
    folder = data_dir() / name
    if not folder.is_dir():
        raise DataMissing(f"data not found: {folder} (set {DATA_DIR_ENV} to the folder holding {name}/)")
    return folder


def bench_env() -> dict[str, str]:
    """The environment for child processes: the repository importable (`bench.workload` in Ray workers too)."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT), "PYTHONUNBUFFERED": "1"}


def run_logged(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the repository root with its output in `log`; a failure names the log's last lines."""
    with log.open("w") as out:
        code = subprocess.run(list(cmd), cwd=ROOT, env=env or bench_env(), stdout=out, stderr=subprocess.STDOUT).returncode
    if code:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {code}; last lines of {log}:\n{tail(log)}")


def tail(log: Path, lines: int = 15) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def bin_path(tool: str) -> str:
    """A console script of this environment (`automl`, `mal`)."""
    return str(Path(sys.executable).parent / tool)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "count": torch.cuda.device_count(), "memory_gib": round(props.total_memory / 2**30, 1)}


def _git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    commit = head.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """CPU, GPU, versions and commit: what a figure needs next to it to mean anything."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cpu_cores": cores,
        "gpu": _gpu(),
        # other processes on the machine inflate wall times; the load (1, 5, 15 min) says how busy it was
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in VERSIONED},
        "git_commit": _git_commit(),
    }


def write_result(name: str, settings: dict[str, Any], figures: dict[str, Any], quick: bool,
                 folder: Path = RESULTS_DIR, quiet: bool = False) -> Path:
    """bench/results/<name>.json (or in `folder`): the figures with the machine, versions and settings they
    came from; `quiet` leaves out the line saying where."""
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine_info(),
        "settings": settings,
        "figures": figures,
    }
    path = folder / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    if not quiet:
        console.print(f"[dim]wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}[/]")
    return path


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to `digits` significant digits; None as a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}g}"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(fmt(cell) for cell in row))
    console.print(table)
