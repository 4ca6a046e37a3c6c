"""`automl.warm_start_from: DIR`: an earlier study's trials as what a new study's searcher knows before its
first trial. A trial is told only when the two studies are comparable (same model, metric and searched
parameters) and its values lie in the new ranges; one judged at fewer epochs than the new budget is told as
pruned, never as a finished result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl.space import SearchSpace
from automl.space.schema import contains
from automl.state import read_study
from plumbing.errors import UserError
from plumbing.numbers import finite_number

__all__ = ["PriorStudy", "PriorTrial", "read_prior_study"]

WHERE = "automl.warm_start_from"


@dataclass(frozen=True)
class PriorTrial:
    trial_id: str
    params: dict[str, Any]
    value: float | None  # its best within the new budget; None when it never reached that budget
    intermediate: dict[int, float]  # epoch -> value, up to the new budget


@dataclass
class PriorStudy:
    folder: Path
    trials: list[PriorTrial] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # trial id -> why it was not told
    best: PriorTrial | None = None  # the best of those that reached the new budget: tried again first

    def summary(self) -> str:
        """One console line: which trials the new study starts from."""
        complete = [t for t in self.trials if t.value is not None]
        reasons: dict[str, int] = {}
        for why in self.skipped.values():
            reasons[why] = reasons.get(why, 0) + 1
        left = "".join(f"; {n} {why}" for why, n in reasons.items())
        best = f"; its best, {self.best.trial_id} ({self.best.value:.4g}), runs first" if self.best else ""
        return (
            f"warm start from {self.folder}: {len(self.trials)} of {len(self.trials) + len(self.skipped)} trials told "
            f"to the searcher ({len(complete)} at the full budget, {len(self.trials) - len(complete)} as pruned){left}{best}"
        )

    def record(self) -> dict[str, Any]:
        """What study.json keeps of it, under settings."""
        return {"study": str(self.folder), "told": [t.trial_id for t in self.trials], "skipped": self.skipped}


def read_prior_study(folder: Path, model: str, metric: str, mode: str, space: SearchSpace, max_epochs: int) -> PriorStudy:
    """The trials of the study in `folder` that the new study (this model, metric, space and budget) can use;
    a study that cannot be compared is one UserError line."""
    if not (folder / "study.json").is_file():
        raise UserError(f"{WHERE}: {folder} holds no study (study.json not found)")
    doc = read_study(folder)
    settings = doc["settings"]
    if settings["model"] != model:
        raise UserError(f"{WHERE}: {folder} is a study of model {settings['model']!r}, this one tunes {model!r}")
    if (settings["metric"], settings["mode"]) != (metric, mode):
        raise UserError(
            f"{WHERE}: {folder} was judged by {settings['metric']} ({settings['mode']}), this study by {metric} ({mode})"
        )
    before = sorted(SearchSpace.from_dict(doc["search_space"]).names)
    if before != sorted(space.names):
        raise UserError(
            f"{WHERE}: {folder} searched {', '.join(before)}; this study searches {', '.join(sorted(space.names))}: "
            "search the same parameters (ranges may differ)"
        )
    prior = PriorStudy(folder)
    sampled = {p.name: p for p in space.sampled}
    for record in doc["records"]:
        why = _unusable(record, sampled)
        if why:
            prior.skipped[record["trial_id"]] = why
            continue
        curve = {
            int(h["epoch"]): float(h[metric]) for h in record["history"]
            if _finite(h.get(metric)) and _finite(h.get("epoch")) and h["epoch"] <= max_epochs
        }
        if not curve:
            prior.skipped[record["trial_id"]] = "reported no value"
            continue
        pick = max if mode == "max" else min
        reached = max(int(h["epoch"]) for h in record["history"] if _finite(h.get("epoch"))) >= max_epochs
        params = {name: record["params"][name] for name in sampled if record["params"].get(name) is not None}
        prior.trials.append(PriorTrial(record["trial_id"], params, pick(curve.values()) if reached else None, curve))
    finished = [t for t in prior.trials if t.value is not None]
    if finished:
        prior.best = (max if mode == "max" else min)(finished, key=lambda t: t.value)
    return prior


def _unusable(record: dict[str, Any], sampled: dict[str, Any]) -> str:
    if record.get("status") == "FAILED":
        return "failed"
    if record.get("status") not in ("COMPLETED", "STOPPED"):
        return "unfinished"
    for name, value in record["params"].items():
        if name in sampled and value is not None and not contains(sampled[name], value):
            return "outside the ranges"
    return ""


def _finite(value: Any) -> bool:
    return finite_number(value) is not None
