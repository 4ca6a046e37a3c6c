"""`automl report DIR`: PNG plots of a finished (or running) study from its study.json alone.

Optuna's matplotlib plots draw the optimisation history, the parallel coordinates and the parameter
importances from an in-memory Optuna study rebuilt from the trials' records; the learning curves are each
trial's per-epoch history, which the study's driver records as the validations come in.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from automl.space import SearchSpace
from automl.state import read_study
from plumbing.errors import UserError
from plumbing.numbers import finite_number as _number

REPORT_DIR = "report"


def _curve(record: dict[str, Any], metric: str) -> list[tuple[int, float]]:
    """(epoch, value) of every validation that holds a number for `metric` (a hand-edited file may not)."""
    points = ((_number(h.get("epoch")), _number(h.get(metric))) for h in record["history"] if isinstance(h, dict))
    return sorted((int(epoch), value) for epoch, value in points if epoch is not None and value is not None)


def _holds(distribution: Any, value: Any) -> bool:
    """Whether an Optuna distribution can take the recorded value (an edited record may hold anything)."""
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except (ValueError, TypeError):
        return False


def _rebuild_study(doc: dict[str, Any], space: SearchSpace):
    import optuna

    settings = doc["settings"]
    try:
        distributions = space.to_optuna()
    except ValueError as exc:  # bounds Optuna refuses (a log range from 0), edited into the file
        raise UserError(f"study.json: search_space: {str(exc).splitlines()[0]}") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if settings["mode"] == "max" else "minimize")
    for record in doc["records"]:
        if _number(record["best_metric"]) is None:
            continue
        values = {n: v for n, v in record["params"].items() if n in distributions and _holds(distributions[n], v)}
        study.add_trial(
            optuna.trial.create_trial(
                params=values,
                distributions={n: distributions[n] for n in values},
                value=float(record["best_metric"]),
                intermediate_values=dict(_curve(record, settings["metric"])),
                user_attrs={"trial_id": record["trial_id"], "status": record["status"]},
            )
        )
    return study


def write_report(study_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Write the plots into `out_dir` (default DIR/report/) and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    doc = read_study(study_dir)
    metric = doc["settings"]["metric"]
    study = _rebuild_study(doc, SearchSpace.from_dict(doc["search_space"]))
    if not study.trials:
        raise UserError(f"{study_dir}: no trial has reported {metric} yet; nothing to plot")
    out = out_dir or study_dir / REPORT_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    title = f"{doc['settings']['model']} · {doc['settings']['algorithm']} · {len(doc['records'])} trials"

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
    save("learning_curves", _learning_curves(doc["records"], metric))
    return written


def _learning_curves(records: list[dict[str, Any]], metric: str):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 5))
    styles = {"COMPLETED": "-", "STOPPED": "--", "FAILED": ":", "RUNNING": "-."}
    for record in records:
        points = _curve(record, metric)
        if points:
            epochs, values = zip(*points, strict=True)
            ax.plot(epochs, values, styles.get(record["status"], "-"), marker="o", markersize=3,
                    label=f"{record['trial_id']} ({record['status'].lower()})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title("Learning curves (dashed: stopped early by the scheduler)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return ax
