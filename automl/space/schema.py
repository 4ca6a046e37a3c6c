"""The search-space file's schema: searchable parameters (type, range, log, step, weighted choices,
conditions, relational constraints, values derived from another parameter), the default and never-searched
lists, popular values; and the checks of a value against one parameter's own range.

Option `weights` drive random sampling only: Optuna's CategoricalDistribution has no weights, so TPE and the
other Optuna samplers ignore them. `popular` values (and each parameter's `default`) seed the warm start,
the first trial a study may enqueue.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from plumbing.wording import describe, did_you_mean

Scalar = bool | int | float | str | None
RELATION = re.compile(r"^\s*(<=|>=|<|>)\s*([A-Za-z_][\w.]*)\s*$")
DERIVATION = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*//\s*(\d+)\s*$")  # TAO's depends_on with `/ N`


class Condition(BaseModel):
    """The parameter is searched only while `param` takes one of these values; otherwise the spec value stays."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    param: str
    equals: Scalar = None
    in_: list[Scalar] | None = Field(None, alias="in")

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if ("equals" in self.model_fields_set) == (self.in_ is not None):
            raise ValueError(f"give exactly one of `equals` or `in` (condition on {self.param})")
        return self

    @property
    def values(self) -> list[Any]:
        return [self.equals] if self.in_ is None else list(self.in_)

    def text(self) -> str:
        return f"{self.param} == {self.equals!r}" if self.in_ is None else f"{self.param} in {self.in_!r}"


class ParamSpec(BaseModel):
    """One searchable parameter. Unset low/high mean unbounded: allowed in a file, refused when searched.

    `derive: "other.param // N"` makes an int parameter computed from another one in each trial, never
    sampled itself (TAO's `depends_on` with `math_cond: "/ N"`)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    type: Literal["float", "int", "categorical", "bool"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Scalar] | None = None
    weights: list[float] | None = None
    default: Scalar = None
    condition: Condition | None = None
    constraint: str | None = None
    derive: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        if self.type == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and math.isfinite(value):
                    if not float(value).is_integer():
                        raise ValueError(
                            f"{self.name}: {key}={value} must be a whole number for an int parameter"
                        )
                    setattr(self, key, int(value))
        problem = shape_problem(self)
        if problem:
            raise ValueError(f"{self.name}: {problem}")
        return self

    @property
    def options(self) -> list[Any]:
        return [False, True] if self.type == "bool" else list(self.choices or [])

    @property
    def relation(self) -> tuple[str, str]:
        """The constraint as (operator, target parameter)."""
        op, target = RELATION.match(self.constraint).groups()
        return op, target

    @property
    def derivation(self) -> tuple[str, int]:
        """`derive` as (source parameter, divisor)."""
        source, divisor = DERIVATION.match(self.derive).groups()
        return source, int(divisor)

    def derived_value(self, source_value: float) -> int:
        """TAO's rule: the source's value floor-divided by N."""
        return int(source_value // self.derivation[1])

    @property
    def targets(self) -> list[str]:
        """The parameters its condition, constraint and derivation read."""
        condition = [self.condition.param] if self.condition is not None else []
        derived = [self.derivation[0]] if self.derive is not None else []
        return condition + ([self.relation[1]] if self.constraint is not None else []) + derived


class SearchSpaceFile(BaseModel):
    """What a model offers for search; `parameters` keys are dotted spec paths."""

    model_config = ConfigDict(extra="forbid")
    model: str
    default_parameters: list[str] = Field(default_factory=list)
    disabled_parameters: list[str] = Field(default_factory=list)
    popular: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, ParamSpec]
    notes: list[str] = Field(default_factory=list)  # what a converted file (a TAO schema) left out, and why

    @model_validator(mode="before")
    @classmethod
    def _names_from_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("parameters"), dict):
            params = {
                k: {"name": k, **v} if isinstance(v, dict) else v for k, v in data["parameters"].items()
            }
            data = {**data, "parameters": params}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpaceFile:
        for key, p in self.parameters.items():
            if p.name != key:
                raise ValueError(f"{key}: name {p.name!r} differs from its key")
        for name in self.default_parameters:
            if name not in self.parameters:
                raise ValueError(
                    f"default_parameters: {name} is not among the parameters{did_you_mean(name, self.parameters)}"
                )
            if name in self.disabled_parameters:
                raise ValueError(f"default_parameters: {name} is also in disabled_parameters")
        for name, value in self.popular.items():
            if name in self.parameters and not contains(self.parameters[name], value):
                raise ValueError(f"popular: {name}={value!r} is outside the parameter's own range")
        return self

    def is_disabled(self, name: str) -> bool:
        """Exact entries always disable; a subtree entry ("train") disables what default_parameters does not name."""
        if name in self.disabled_parameters:
            return True
        under = any(name.startswith(d + ".") for d in self.disabled_parameters)
        return under and name not in self.default_parameters


_KEYS = {*ParamSpec.model_fields, *SearchSpaceFile.model_fields, "param", "equals", "in"}  # what a file may say


def one_line(exc: ValidationError, name: str | None = None) -> str:
    """pydantic's first error as `parameter: what`, with close-match hints for unknown keys."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    if loc[:1] == ["parameters"] and len(loc) > 1:
        name, loc = str(loc[1]), loc[2:]
    message = describe({**error, "loc": loc}, lambda where: did_you_mean(where.rsplit(".", 1)[-1], _KEYS))
    return message if not name or message.startswith(f"{name}:") else f"{name}: {message}"


def shape_problem(p: ParamSpec) -> str | None:
    """What is self-contradictory in one parameter (no spec needed), or None."""
    numeric = p.type in ("float", "int")
    if p.derive is not None:
        return _derive_problem(p)
    if p.type == "categorical" and not p.choices:
        return "a categorical parameter needs a non-empty list of choices"
    if p.type != "categorical" and p.choices is not None:
        return f"choices only apply to categorical parameters (this one is {p.type})"
    if p.choices and len({repr(c) for c in p.choices}) != len(p.choices):
        return f"choices {p.choices} repeat a value"
    for key in ("low", "high", "step"):
        value = getattr(p, key)
        if value is not None and (not numeric or math.isnan(value)):
            return f"{key}={value} is not allowed" + ("" if numeric else f" for a {p.type} parameter")
    if p.log and not numeric:
        return f"log only applies to float/int parameters (this one is {p.type})"
    if p.constraint is not None and not numeric:
        return f"constraint only applies to float/int parameters (this one is {p.type})"
    if p.constraint is not None and not RELATION.match(p.constraint):
        return f"constraint {p.constraint!r} must look like '< other.param' (one of <, <=, >, >=)"
    if numeric:
        if p.low is not None and p.high is not None and not p.low < p.high:
            return f"low={p.low} must be below high={p.high}"
        if p.log and p.step is not None:
            return "log and step are exclusive (Optuna cannot sample both)"
        if p.log and p.low is not None and p.low <= 0:
            return f"log needs low > 0, got low={p.low}"
        if p.step is not None and not (0 < p.step < math.inf):
            return f"step={p.step} must be a positive number"
        if p.step is not None and finite(p.low, p.high) and not on_grid(p.high, p.low, p.step):
            return f"high={p.high} must be low={p.low} plus a whole number of steps ({p.step})"
    if p.weights is not None:
        if not p.options:
            return "weights only apply to categorical and bool parameters"
        if len(p.weights) != len(p.options):
            return f"weights {p.weights} need one entry per choice ({len(p.options)} choices)"
        if not all(0 < w < math.inf for w in p.weights):
            return f"weights {p.weights} must all be > 0"
    if p.default is not None and not contains(p, p.default):
        return f"default={p.default!r} is not a value {range_text(p)}"
    return None


def _derive_problem(p: ParamSpec) -> str | None:
    match = DERIVATION.match(p.derive)
    if not match or int(match[2]) < 1:
        return f"derive {p.derive!r} must look like 'other.param // N' (a whole N >= 1)"
    if p.type != "int":
        return f"derive only applies to int parameters (this one is {p.type})"
    kept = [k for k in ("low", "high", "step", "choices", "weights", "constraint") if getattr(p, k) is not None]
    if kept or p.log:
        return f"a derived parameter is not sampled, so it takes no {', '.join(kept or ['log'])}"
    return None


def contains(p: ParamSpec, value: Any) -> bool:
    """Whether value lies in p's own range/choices/grid (conditions and constraints aside)."""
    if p.type in ("categorical", "bool"):
        return any(same_value(value, c) for c in p.options)
    if p.derive is not None:  # any whole number: the source decides
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if p.type == "int" and not float(value).is_integer():
        return False
    lo, hi = span(p)
    return lo <= value <= hi and (
        p.step is None or on_grid(value, p.low if p.low is not None else 0, p.step)
    )


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML and JSON values mix them)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def span(p: ParamSpec) -> tuple[float, float]:
    return (-math.inf if p.low is None else p.low), (math.inf if p.high is None else p.high)


def finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def on_grid(value: float, anchor: float, step: float) -> bool:
    q = (value - anchor) / step
    return abs(q - round(q)) < 1e-9


def range_text(p: ParamSpec) -> str:
    if p.derive is not None:
        return f"= {p.derive.strip()} (derived, not sampled)"
    if p.type in ("categorical", "bool"):
        return f"of {p.options}"
    scale = " (log)" if p.log else f" (step {p.step})" if p.step is not None else ""
    return f"in [{p.low}, {p.high}]{scale}"


def param_line(p: ParamSpec) -> str:
    """One human line per parameter: for the study log and `automl space`."""
    text = f"{p.name}: {p.type} {range_text(p)}"
    if p.weights:
        text += f" weights {p.weights}"
    if p.condition is not None:
        text += f"; only when {p.condition.text()}"
    if p.constraint is not None:
        text += f"; must be {p.constraint.strip()}"
    return text
