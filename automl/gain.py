"""What a study gained over the user's own values: the trial of the spec's values against the best trial at the
same budget (the epochs that trial reached), with the model's baselines beside them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from automl.space.schema import same_value
from automl.state import TrialRecord
from plumbing.numbers import finite_number as _number

__all__ = ["gain_line", "spec_trial", "study_gain"]


def spec_trial(records: Iterable[TrialRecord], point: Mapping[str, Any]) -> TrialRecord | None:
    """The first trial that ran `point` (the spec's values fitted to the study's ranges)."""
    if not point:
        return None
    return next((r for r in records if all(_same(r.params.get(name), v) for name, v in point.items())), None)


def study_gain(
    records: list[TrialRecord],
    metric: str,
    mode: str,
    spec_values: Mapping[str, Any],
    point: Mapping[str, Any],
    baselines: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """study.json's `gain`: `default` (the spec's values' best `metric` within the epochs their trial reached),
    `best` (the best of every trial within that budget, that trial included), `gain` (how much better `best`
    is, in the metric's direction), `budget`, `default_trial`, what was moved into the ranges (`narrowed`), and
    each baseline's value of the metric. A `note` says why `default` is null."""
    gain: dict[str, Any] = {
        "metric": metric, "default": None, "best": None, "gain": None, "budget": None, "default_trial": None,
        **{name: _number(values.get(metric)) for name, values in baselines.items()},
    }
    narrowed = {name: [value, point[name]] for name, value in spec_values.items() if name in point and not _same(value, point[name])}
    if narrowed:
        gain["narrowed"] = narrowed
    trial = spec_trial(records, point)
    if trial is None:
        gain["note"] = "no trial ran the spec's values"
        return gain
    gain["default_trial"] = trial.trial_id
    budget = max((int(h["epoch"]) for h in trial.history if _number(h.get(metric)) is not None), default=0)
    if trial.status == "FAILED" or not budget:
        gain["note"] = f"the trial of the spec's values ({trial.trial_id}) {_failure(trial)}"
        return gain
    pick = max if mode == "max" else min
    default = _within(trial, metric, budget, pick)
    reached = [r for r in records if r.status != "FAILED" and max((int(h["epoch"]) for h in r.history), default=0) >= budget]
    best = pick(v for r in reached if (v := _within(r, metric, budget, pick)) is not None)
    gain.update(default=default, best=best, budget=budget, gain=(best - default) if mode == "max" else (default - best))
    return gain


def gain_line(gain: Mapping[str, Any] | None) -> str:
    """The study's last console line: what the search bought over the spec's own values."""
    if not gain:
        return "gain over your spec's values: not measured (a study started before gains were recorded)"
    metric = gain["metric"]
    if gain["gain"] is None:
        return f"gain over your spec's values: not measured ({gain['note']})"
    baselines = [f"{name} {value:.3f}" for name, value in gain.items() if name not in _KEYS and isinstance(value, float)]
    beside = f"; {', '.join(baselines)}" if baselines else ""
    moved = " (moved into the study's ranges)" if gain.get("narrowed") else ""
    return (
        f"{gain['gain']:+.3f} {metric} over your spec's values{moved}: {gain['default']:.3f} → {gain['best']:.3f} "
        f"within {gain['budget']} epoch{'s' if gain['budget'] != 1 else ''} ({gain['default_trial']}){beside}"
    )


_KEYS = {"metric", "default", "best", "gain", "budget", "default_trial", "narrowed", "note", "baselines_note"}


def _within(record: TrialRecord, metric: str, budget: int, pick: Any) -> float | None:
    values = [v for h in record.history if int(h["epoch"]) <= budget and (v := _number(h.get(metric))) is not None]
    return pick(values) if values else None


def _failure(trial: TrialRecord) -> str:
    if trial.status == "FAILED":
        return f"failed: {trial.error.splitlines()[0][:160] if trial.error else 'no reason recorded'}"
    return "reported no value"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return _number(a) is not None and _number(b) is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15)
    return same_value(a, b)
