"""`automl report DIR`: PNG plots of a finished (or running) study from its folder alone.

Optuna's matplotlib plots draw the optimisation history, the parallel coordinates and the parameter
importances from an in-memory Optuna study rebuilt from the leaderboard; the learning curves come from each
trial's own per-epoch log.
"""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

from mal.errors import UserError

REPORT_DIR = "report"


def _cell(value: str, param) -> Any:
    if param.type == "float":
        return float(value)
    if param.type == "int":
        return int(float(value))
    for option in param.options:  # categorical and bool: the option whose text the CSV holds
        if str(option) == value:
            return option
    raise ValueError(value)


def _history(study_dir: Path, trial_id: str, metric: str) -> list[tuple[int, float]]:
    log = study_dir / "trials" / trial_id / "train" / "logs" / "metrics.csv"
    if not log.is_file():
        return []
    points = {}
    with log.open() as f:
        for row in csv.DictReader(f):
            if row.get(metric):
                points[int(row["epoch"]) + 1] = float(row[metric])
    return sorted(points.items())


def _rebuild_study(doc: dict[str, Any], rows: list[dict[str, str]], histories: dict[str, list[tuple[int, float]]]):
    import optuna

    from automl.space import ParamSpec, _distribution

    settings = doc["settings"]
    column = f"best_{settings['metric']}"
    params = {n: ParamSpec.model_validate({"name": n, **d}) for n, d in doc["search_space"]["parameters"].items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if settings["mode"] == "max" else "minimize")
    for row in rows:
        if not row.get(column):
            continue
        values = {n: _cell(row[n], p) for n, p in params.items() if row.get(n) not in (None, "")}
        study.add_trial(
            optuna.trial.create_trial(
                params=values,
                distributions={n: _distribution(params[n]) for n in values},
                value=float(row[column]),
                intermediate_values=dict(histories.get(row["trial_id"], [])),
                user_attrs={"trial_id": row["trial_id"], "status": row["status"]},
            )
        )
    return study


def write_report(study_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write the plots into `out_dir` (default DIR/report/) and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    study_file, board = study_dir / "study.json", study_dir / "leaderboard.csv"
    if not study_file.is_file() or not board.is_file():
        raise UserError(f"{study_dir} holds no study (study.json and leaderboard.csv not found)")
    doc = json.loads(study_file.read_text())
    with board.open() as f:
        rows = list(csv.DictReader(f))
    metric = doc["settings"]["metric"]
    histories = {r["trial_id"]: _history(study_dir, r["trial_id"], metric) for r in rows}
    study = _rebuild_study(doc, rows, histories)
    if not study.trials:
        raise UserError(f"{study_dir}: no trial has reported {metric} yet; nothing to plot")
    out = out_dir or study_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    title = f"{doc['settings']['model']} · {doc['settings']['algorithm']} · {len(rows)} trials"

    def save(name: str, ax_or_axes) -> None:
        figure = (ax_or_axes.flat[0] if hasattr(ax_or_axes, "flat") else ax_or_axes).figure
        figure.suptitle(title, fontsize=9)
        figure.set_size_inches(max(figure.get_figwidth(), 8), max(figure.get_figheight(), 5))
        path = out / f"{name}.png"
        figure.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(figure)
        written.append(path)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental on every call
        save("optimization_history", oplt.plot_optimization_history(study, target_name=metric))
        if study.trials[0].params:
            save("parallel_coordinates", oplt.plot_parallel_coordinate(study, target_name=metric))
        if len(study.trials) >= 2 and len(study.trials[0].params) >= 1:
            try:
                save("param_importances", oplt.plot_param_importances(study, target_name=metric))
            except (RuntimeError, ValueError):
                pass  # too few distinct values to estimate importances
    save("learning_curves", _learning_curves(rows, histories, metric))
    return written


def _learning_curves(rows: list[dict[str, str]], histories: dict[str, list[tuple[int, float]]], metric: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"COMPLETED": "-", "STOPPED": "--", "FAILED": ":", "RUNNING": "-."}
    for row in rows:
        points = histories.get(row["trial_id"])
        if points:
            epochs, values = zip(*points, strict=True)
            ax.plot(epochs, values, styles.get(row["status"], "-"), marker="o", markersize=3,
                    label=f"{row['trial_id']} ({row['status'].lower()})")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("Learning curves (dashed: stopped early by the scheduler)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return ax
