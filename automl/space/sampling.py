"""The resolved space of one study and how it is sampled: Optuna distributions and define-by-run
suggestions, weighted random draws, and grids, with conditions switched off, constraints clamped and
derived parameters computed from their source's value in the same trial."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from automl.space.schema import ParamSpec, contains, on_grid, param_line, same_value
from plumbing.errors import UserError

MAX_GRID_VALUES = 64  # per parameter: a grid beyond this is a typo or a missing step, not a plan


@dataclass(frozen=True)
class SearchSpace:
    """The resolved space of one study: parameters in dependency order plus the spec values they may read."""

    model: str
    params: tuple[ParamSpec, ...]
    base: dict[str, Any]
    warm_start: dict[str, Any]  # the space file's popular values (else defaults), fitted to the ranges
    spec_values: dict[str, Any] = field(default_factory=dict)  # the spec's own value of every sampled parameter

    @property
    def names(self) -> list[str]:
        """Every parameter a trial's values carry, derived ones included."""
        return [p.name for p in self.params]

    @property
    def sampled(self) -> tuple[ParamSpec, ...]:
        """The parameters a sampler draws (derived ones are computed, not drawn)."""
        return tuple(p for p in self.params if p.derive is None)

    def to_optuna(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Static distributions over the full ranges of the sampled parameters; conditions, constraints and
        derived values need `suggest` (define-by-run)."""
        return {p.name: _distribution(p) for p in self.sampled}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one trial define-by-run: inactive parameters are not sampled, constrained ranges are clamped."""
        return self._walk(lambda d: _suggest_one(trial, d))

    def random_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Sample with option weights and log scales honoured (what Optuna's samplers cannot do with weights)."""
        return self._walk(lambda d: _draw(d, rng))

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of a finite space (inactive parameters left out, constraints applied)."""
        for p in self.sampled:
            _grid_values(p, f"search space '{self.model}': grid search")
        rows: list[dict[str, Any]] = [{}]
        for p in self.params:
            expanded = []
            for row in rows:
                values = {**self.base, **row}
                allowed = domain(p, values)
                if allowed is None:
                    expanded.append(row)
                elif p.derive is not None:
                    expanded.append({**row, p.name: p.derived_value(values[p.derivation[0]])})
                else:
                    expanded += [{**row, p.name: v} for v in _grid_values(allowed, "")]
            rows = expanded
        return rows

    def fitted(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """`values` moved into the space as a trial would hold them: each onto the nearest value its range (and
        the constraints its parents' values leave) allows, inactive ones out, derived ones computed. A parameter
        with no usable value is left out, with those that read it: a searcher draws them."""
        known, chosen, unknown = dict(self.base), {}, set()
        for p in self.params:
            if unknown.intersection(p.targets):
                unknown.add(p.name)
                continue
            allowed = domain(p, known)
            if allowed is None:
                continue
            if p.derive is not None:
                value = p.derived_value(known[p.derivation[0]])
            else:
                value = nearest(allowed, values[p.name]) if p.name in values else None
            if value is None:
                unknown.add(p.name)
            else:
                chosen[p.name] = known[p.name] = value
        return chosen

    def first_points(self) -> dict[str, dict[str, Any]]:
        """What a warm-started study tries first, in order: the spec's own values, then the popular ones, each
        fitted to the study's ranges; the popular point is left out when it is the spec's."""
        points = {"your spec's values": self.fitted(self.spec_values), "popular values": self.fitted(self.warm_start)}
        if points["popular values"] == points["your spec's values"]:
            del points["popular values"]
        return {label: point for label, point in points.items() if point}

    def complete(self, point: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A whole trial: `point`'s values where it has ones the space allows, random draws for the rest."""
        return self._walk(lambda d: point[d.name] if d.name in point and contains(d, point[d.name]) else _draw(d, rng))

    def describe(self) -> list[str]:
        """One human line per parameter, for the study log."""
        return [param_line(p) for p in self.params]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record of exactly what was searched, for tracking and study.json."""
        params = {
            p.name: p.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"name"})
            for p in self.params
        }
        return {
            "model": self.model, "parameters": params, "base": self.base, "warm_start": self.warm_start,
            "spec_values": self.spec_values,
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> SearchSpace:
        """The space `to_dict` recorded (study.json keeps one)."""
        params = tuple(ParamSpec.model_validate({"name": n, **body}) for n, body in record["parameters"].items())
        spec_values = dict(record.get("spec_values", {}))  # absent from studies started before warm starts
        return cls(record["model"], params, dict(record["base"]), dict(record["warm_start"]), spec_values)

    def _walk(self, pick: Callable[[ParamSpec], Any]) -> dict[str, Any]:
        """Visit parameters in dependency order so conditions and constraints see their targets' values."""
        values, chosen = dict(self.base), {}
        for p in self.params:
            allowed = domain(p, values)
            if allowed is not None:
                value = pick(allowed) if p.derive is None else p.derived_value(values[p.derivation[0]])
                chosen[p.name] = values[p.name] = value
        return chosen


def domain(p: ParamSpec, values: dict[str, Any]) -> ParamSpec | None:
    """p's range given the values already fixed: None when its condition is off, clamped by its constraint."""
    if p.condition is not None and not any(same_value(values[p.condition.param], v) for v in p.condition.values):
        return None
    return clamp(p, values)


def nearest(p: ParamSpec, value: Any) -> Any:
    """The value of p's range (its grid, whole numbers for an int) nearest to `value`; None for a choice p does
    not offer or a value that is no number."""
    if p.type in ("categorical", "bool"):
        return next((option for option in p.options if same_value(value, option)), None)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    x = min(max(float(value), p.low), p.high)
    if p.step is not None or p.type == "int" and not p.log:
        return _grid_point(p, min(max(round((x - p.low) / (p.step or 1)), 0), _grid_size(p) - 1))
    return int(round(x)) if p.type == "int" else x


def clamp(p: ParamSpec, values: dict[str, Any]) -> ParamSpec:
    """p's range narrowed so that its constraint holds against the target's value in `values`."""
    if p.constraint is None:
        return p
    op, target = p.relation
    edge = _edge(p, values[target], op)
    bounds = {"high": min(p.high, edge)} if op[0] == "<" else {"low": max(p.low, edge)}
    return p.model_copy(update=bounds)


def _edge(p: ParamSpec, bound: float, op: str) -> float:
    """The extreme value of p's grid (or of the reals) that still satisfies `value op bound`."""
    below, strict = op[0] == "<", op in ("<", ">")
    step = p.step if p.step is not None else (1 if p.type == "int" else None)
    if step is None:
        return math.nextafter(bound, -math.inf if below else math.inf) if strict else bound
    q = (bound - p.low) / step
    exact = on_grid(bound, p.low, step)
    k = round(q) if exact else (math.floor(q) if below else math.ceil(q))
    if exact and strict:
        k += -1 if below else 1
    return _grid_point(p, k)


def _distribution(p: ParamSpec) -> optuna.distributions.BaseDistribution:
    if p.type == "float":
        return optuna.distributions.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    if p.type == "int":
        return optuna.distributions.IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return optuna.distributions.CategoricalDistribution(p.options)


def _suggest_one(trial: optuna.Trial, p: ParamSpec) -> Any:
    if p.type == "float":
        return trial.suggest_float(p.name, p.low, p.high, log=p.log, step=p.step)
    if p.type == "int":
        return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
    return trial.suggest_categorical(p.name, p.options)


def _draw(p: ParamSpec, rng: np.random.Generator) -> Any:
    if p.type in ("categorical", "bool"):
        w = np.asarray(p.weights or [1.0] * len(p.options), dtype=float)
        return p.options[int(rng.choice(len(p.options), p=w / w.sum()))]
    if p.step is not None or (p.type == "int" and not p.log):
        return _grid_point(p, int(rng.integers(0, _grid_size(p))))
    if p.type == "int":  # log-uniform over [low-0.5, high+0.5], then rounded, as Optuna does
        x = math.exp(rng.uniform(math.log(p.low - 0.5), math.log(p.high + 0.5)))
        return int(min(max(round(x), p.low), p.high))
    if p.log:
        return float(math.exp(rng.uniform(math.log(p.low), math.log(p.high))))
    return float(rng.uniform(p.low, p.high))


def _grid_values(p: ParamSpec, where: str) -> list[Any]:
    if p.type in ("categorical", "bool"):
        return p.options
    if p.type == "float" and p.step is None:
        raise UserError(
            f"{where}: {p.name}: a grid needs finite values; give this float parameter a step or choices"
        )
    n = _grid_size(p)
    if n > MAX_GRID_VALUES:
        raise UserError(
            f"{where}: {p.name}: {n} values is too many for a grid (limit {MAX_GRID_VALUES}); use a larger step or narrow the range"
        )
    return [_grid_point(p, k) for k in range(n)]


def _grid_size(p: ParamSpec) -> int:
    return math.floor((p.high - p.low) / (p.step or 1) + 1e-9) + 1


def _grid_point(p: ParamSpec, k: int) -> float | int:
    value = p.low + k * (p.step or 1)
    if p.type == "int":
        return int(round(value))
    return float(f"{value:.12g}")  # 12 significant digits drop float noise like 0.30000000000000004
