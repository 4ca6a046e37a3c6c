"""Search spaces: a file of searchable parameters -> a space checked against the model's spec -> samples.

A file (our YAML, or a TAO `train.schema.json`) says what *may* be searched. `resolve_space` picks what one
study searches, applies the user's narrowed ranges and checks every bound and choice against the spec, so a
bad space fails before the first trial instead of in the middle of a study.

Option `weights` drive `random_sample` only: Optuna's CategoricalDistribution has no weights, so TPE and the
other Optuna samplers ignore them. `popular` values (and each parameter's `default`) seed `warm_start`, the
first trial a study may enqueue.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mal.errors import UserError
from mal.spec import ExperimentSpec, read_mapping, with_values

Scalar = bool | int | float | str | None
_RELATION = re.compile(r"^\s*(<=|>=|<|>)\s*([A-Za-z_][\w.]*)\s*$")
_OVERRIDE_KEYS = ("low", "high", "choices", "weights", "log", "step")
_SEARCH_TYPES = {
    "float": {"float", "int", "categorical"},
    "int": {"int", "categorical"},
    "bool": {"bool", "categorical"},
}
MAX_GRID_VALUES = 64  # per parameter: a grid beyond this is a typo or a missing step, not a plan


# ---------------------------------------------------------------------------------------------- data model


class Condition(BaseModel):
    """The parameter is searched only while `param` takes one of these values; otherwise the spec value stays."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    param: str
    equals: Scalar = None
    in_: list[Scalar] | None = Field(None, alias="in")

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        if ("equals" in self.model_fields_set) == (self.in_ is not None):
            raise ValueError(f"condition on {self.param}: give exactly one of `equals` or `in`")
        return self

    @property
    def values(self) -> list[Any]:
        return [self.equals] if self.in_ is None else list(self.in_)

    def text(self) -> str:
        return f"{self.param} == {self.equals!r}" if self.in_ is None else f"{self.param} in {self.in_!r}"


class ParamSpec(BaseModel):
    """One searchable parameter. Unset low/high mean unbounded: allowed in a file, refused when searched."""

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
        problem = _shape_problem(self)
        if problem:
            raise ValueError(f"{self.name}: {problem}")
        return self

    @property
    def options(self) -> list[Any]:
        return [False, True] if self.type == "bool" else list(self.choices or [])


class SearchSpaceFile(BaseModel):
    """What a model offers for search; `parameters` keys are dotted spec paths."""

    model_config = ConfigDict(extra="forbid")
    model: str
    default_parameters: list[str] = Field(default_factory=list)
    disabled_parameters: list[str] = Field(default_factory=list)
    popular: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, ParamSpec]

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
                    f"default_parameters: {name} is not among the parameters{_did_you_mean(name, self.parameters)}"
                )
            if name in self.disabled_parameters:
                raise ValueError(f"default_parameters: {name} is also in disabled_parameters")
        for name, value in self.popular.items():
            if name in self.parameters and not _contains(self.parameters[name], value):
                raise ValueError(f"popular: {name}={value!r} is outside the parameter's own range")
        return self

    def is_disabled(self, name: str) -> bool:
        """Exact entries always disable; a subtree entry ("train") disables what default_parameters does not name."""
        if name in self.disabled_parameters:
            return True
        under = any(name.startswith(d + ".") for d in self.disabled_parameters)
        return under and name not in self.default_parameters


# ---------------------------------------------------------------------------------------------- loading


def load_space_file(path: str | Path) -> SearchSpaceFile:
    """Read a YAML search-space file, or convert a TAO train.schema.json (detected by `.json` or `properties`)."""
    path = Path(path)
    data = read_mapping(path, "search-space file")
    if "properties" in data:
        data = _from_tao_schema(data, path)
    try:
        return SearchSpaceFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"search-space file {path}: {_one_line(exc)}") from None


_TAO_TYPES = {
    "float": "float", "number": "float", "int": "int", "integer": "int", "bool": "bool", "boolean": "bool",
    "categorical": "categorical", "ordered": "categorical", "ordered_int": "categorical",
}  # fmt: skip


def _from_tao_schema(schema: dict[str, Any], path: Path) -> dict[str, Any]:
    """TAO's nested `properties` and automl_* keys -> our file layout; unsearchable leaves are left out."""
    defaults = list(schema.get("automl_default_parameters") or [])
    disabled = list(schema.get("automl_disabled_parameters") or [])
    params = {}
    for name, prop in _tao_leaves(schema["properties"]):
        if prop.get("automl_enabled") is False:
            disabled.append(name)
        converted = _tao_param(name, prop)
        if isinstance(converted, str):
            if name in defaults:
                raise UserError(f"TAO schema {path}: {name} is in automl_default_parameters but {converted}")
            continue
        params[name] = converted
    model = (schema.get("default") or {}).get("model_name") or path.name.split(".")[0]
    popular = dict(_flatten(schema.get("popular") or {}))
    return {"model": model, "default_parameters": defaults, "disabled_parameters": disabled,
            "popular": popular, "parameters": params}  # fmt: skip


def _tao_leaves(props: dict[str, Any], prefix: str = "") -> typing.Iterator[tuple[str, dict[str, Any]]]:
    for key, prop in props.items():
        if isinstance(prop, dict) and isinstance(prop.get("properties"), dict):
            yield from _tao_leaves(prop["properties"], f"{prefix}{key}.")
        elif isinstance(prop, dict):
            yield f"{prefix}{key}", prop


def _flatten(data: dict[str, Any], prefix: str = "") -> typing.Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _tao_param(name: str, prop: dict[str, Any]) -> dict[str, Any] | str:
    """A TAO property as a ParamSpec body, or the reason it cannot be searched."""
    kind = prop.get("value_type") or prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    enum = prop.get("enum")
    if kind not in _TAO_TYPES and not (kind == "string" and enum):
        return f"its TAO type {kind!r} cannot be searched"
    body: dict[str, Any] = {"name": name, "type": "categorical" if enum else _TAO_TYPES[kind]}
    if enum:
        body.update(choices=enum, weights=prop.get("option_weights"))
    elif body["type"] == "categorical":
        return f"its TAO type {kind!r} has no enum of options"
    elif body["type"] != "bool":
        body.update(low=prop.get("minimum"), high=prop.get("maximum"))
    default = prop.get("default")
    if default is None or isinstance(default, bool | int | float | str):
        body["default"] = default
    problem = _tao_math_cond(body, prop.get("math_cond"), prop.get("depends_on"))
    return problem or body


def _tao_math_cond(body: dict[str, Any], cond: Any, depends_on: Any) -> str | None:
    """TAO's math_cond/depends_on: relational -> constraint, `/ N` -> step, `> c` -> bound; else the problem."""
    for text in (cond, depends_on):
        match = _RELATION.match(text) if isinstance(text, str) else None
        if match and match[2] != "depends_on":
            body["constraint"] = f"{match[1]} {match[2]}"
            return None
    op_only = re.match(r"^\s*(<=|>=|<|>)\s*(depends_on)?\s*$", cond) if isinstance(cond, str) else None
    if op_only and isinstance(depends_on, str):
        body["constraint"] = f"{op_only[1]} {depends_on.strip()}"
        return None
    if not cond:
        return None
    numeric = re.match(r"^\s*(<=|>=|<|>|/)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*$", str(cond))
    if not numeric or body["type"] not in ("float", "int"):
        return f"its math_cond {cond!r} is not supported"
    op, c = numeric[1], float(numeric[2])
    is_int = body["type"] == "int"
    low = -math.inf if body.get("low") is None else body["low"]
    high = math.inf if body.get("high") is None else body["high"]
    if op == "/":
        if not is_int or c <= 0 or not c.is_integer():
            return f"its math_cond {cond!r} (multiple of) needs an int parameter and a positive whole N"
        body.update(step=c, low=math.ceil(low / c) * c if math.isfinite(low) else low,
                    high=math.floor(high / c) * c if math.isfinite(high) else high)  # fmt: skip
    elif op in (">", ">="):
        strict = c + 1 if is_int else math.nextafter(c, math.inf)
        body["low"] = max(low, strict if op == ">" else c)
    else:
        strict = c - 1 if is_int else math.nextafter(c, -math.inf)
        body["high"] = min(high, strict if op == "<" else c)
    return None


# ---------------------------------------------------------------------------------------------- resolving


def resolve_space(
    space_file: SearchSpaceFile,
    spec: ExperimentSpec,
    hyperparameters: list[str] | None = None,
    range_overrides: dict[str, dict[str, Any]] | None = None,
) -> SearchSpace:
    """Select, narrow and check the study's parameters against the spec; every problem is one UserError line."""
    where = f"search space '{space_file.model}'"
    fields = _spec_fields(type(spec))
    names = _select(space_file, hyperparameters, fields, where)
    overrides = dict(range_overrides or {})
    for name in overrides:
        if name not in names:
            hint = (
                _did_you_mean(name, names)
                or f" (searched: {', '.join(names)}; add it to automl.hyperparameters)"
            )
            raise UserError(f"{where}: range_overrides: {name} is not a searched parameter{hint}")
    params = {n: _narrow(space_file.parameters[n], overrides.get(n), where) for n in names}
    for p in params.values():
        _check_kind(p, fields[p.name], where)
    base = {}
    for p in params.values():
        for target in _targets(p):
            if target not in fields:
                raise UserError(
                    f"{where}: {p.name}: {target} is not a field of the spec{_did_you_mean(target, fields)}"
                )
            if target == p.name:
                raise UserError(
                    f"{where}: {p.name}: a condition or constraint cannot refer to the parameter itself"
                )
            base[target] = _spec_value(spec, target)
    for p in params.values():
        _check_relations(p, params, base, fields, where)
    for p in params.values():
        _check_in_spec(p, params, spec, where)
    ordered = _dependency_order(params, where)
    return SearchSpace(space_file.model, ordered, base, _warm_start(ordered, space_file, base))


def _select(
    sf: SearchSpaceFile, requested: list[str] | None, fields: dict[str, str], where: str
) -> list[str]:
    names = list(dict.fromkeys(sf.default_parameters if requested is None else requested))
    searchable = [n for n in sf.parameters if not sf.is_disabled(n)]
    if not names:
        raise UserError(f"{where}: no parameters selected; choose from {', '.join(searchable)}")
    for name in names:
        if name not in fields:
            raise UserError(f"{where}: {name}: not a field of the spec{_did_you_mean(name, fields)}")
        if sf.is_disabled(name):
            raise UserError(f"{where}: {name}: disabled in the search space (it is never searched)")
        if name not in sf.parameters:
            raise UserError(
                f"{where}: {name}: not offered by the search space; searchable: {', '.join(searchable)}"
            )
    order = list(sf.parameters)
    return sorted(names, key=order.index)


def _narrow(p: ParamSpec, override: dict[str, Any] | None, where: str) -> ParamSpec:
    """Apply a user's range override, which may only narrow the file's range (TAO's rule)."""
    if not override:
        return p
    if not isinstance(override, dict) or set(override) - set(_OVERRIDE_KEYS):
        bad = sorted(set(override) - set(_OVERRIDE_KEYS)) if isinstance(override, dict) else override
        raise UserError(
            f"{where}: range_overrides: {p.name}: {bad} not allowed; use keys {', '.join(_OVERRIDE_KEYS)}"
        )
    body = p.model_dump(by_alias=True, exclude_unset=True)
    if (
        "choices" in override
        and "weights" not in override
        and p.weights
        and isinstance(override["choices"], list)
    ):
        # each kept choice keeps its weight; a new choice is refused below, so its placeholder never counts
        pairs = list(zip(p.options, p.weights, strict=True))
        body["weights"] = [next((w for c, w in pairs if _same(c, x)), 1.0) for x in override["choices"]]
    body.update(override)
    try:
        q = ParamSpec.model_validate(body)
    except ValidationError as exc:
        raise UserError(f"{where}: range_overrides: {_one_line(exc, p.name)}") from None
    if q.type == "categorical":
        extra = [c for c in q.options if not _contains(p, c)]
        if extra:
            raise UserError(
                f"{where}: range_overrides: {p.name}: choices {extra} are not in the file's {p.choices} (overrides may only narrow)"
            )
        return q
    lo, hi = _span(p)
    for key, value in (("low", q.low), ("high", q.high)):
        unbounded = value is None and getattr(p, key) is not None
        if unbounded or (value is not None and not lo <= value <= hi):
            raise UserError(
                f"{where}: range_overrides: {p.name}: {key}={value} widens the file's range [{p.low}, {p.high}] (overrides may only narrow)"
            )
    on_grid = q.step is not None and _on_grid(q.step, 0, p.step or 1) and _contains(p, q.low)
    if p.step is not None and not on_grid:
        raise UserError(
            f"{where}: range_overrides: {p.name}: step={q.step}, low={q.low} must stay on the file's grid (low {p.low}, step {p.step})"
        )
    return q


def _check_kind(p: ParamSpec, kind: str, where: str) -> None:
    allowed = _SEARCH_TYPES.get(kind, {"categorical"})
    if p.type not in allowed:
        raise UserError(
            f"{where}: {p.name}: type {p.type} does not fit the spec field ({kind}); use {' or '.join(sorted(allowed))}"
        )
    if p.type == "categorical" and kind in _SEARCH_TYPES:
        bad = [c for c in p.options if not _fits(c, kind)]
        if bad:
            raise UserError(f"{where}: {p.name}: choices {bad} are not {kind} values like the spec field")
    if p.type in ("float", "int"):
        for key, value in (("low", p.low), ("high", p.high)):
            if value is None or not math.isfinite(value):
                raise UserError(
                    f"{where}: {p.name}: {key}={value} is not a finite bound; set one in the file or narrow it with automl.range_overrides"
                )


def _check_relations(
    p: ParamSpec, params: dict[str, ParamSpec], base: dict[str, Any], fields: dict[str, str], where: str
) -> None:
    """Conditions must be able to hold; constraints must leave room for every value of their target."""
    if p.condition is not None:
        target = p.condition.param
        if target in params:
            possible = any(_contains(params[target], v) for v in p.condition.values)
            why = f"{target} is searched over {_range_text(params[target])}"
        else:
            possible = any(_same(base[target], v) for v in p.condition.values)
            why = f"{target} is not searched and is {base[target]!r} in the spec"
        if not possible:
            raise UserError(f"{where}: {p.name}: condition {p.condition.text()} can never hold ({why})")
    if p.constraint is None:
        return
    op, target = _RELATION.match(p.constraint).groups()
    if fields[target] not in ("float", "int") or (
        target in params and params[target].type not in ("float", "int")
    ):
        raise UserError(f"{where}: {p.name}: constraint target {target} must be a float or int parameter")
    t = params.get(target)
    lo, hi = (base[target], base[target]) if t is None else (t.low, t.high)
    if t is not None and t.condition is not None:  # when the target is inactive, its spec value applies
        lo, hi = min(lo, base[target]), max(hi, base[target])
    fits = {"<": p.low < lo, "<=": p.low <= lo, ">": p.high > hi, ">=": p.high >= hi}[op]
    if not fits:
        edge = (
            f"low={p.low} vs {target}'s smallest value {lo}"
            if op[0] == "<"
            else f"high={p.high} vs {target}'s largest value {hi}"
        )
        raise UserError(f"{where}: {p.name}: constraint '{p.constraint}' cannot always hold ({edge})")


def _check_in_spec(p: ParamSpec, params: dict[str, ParamSpec], spec: ExperimentSpec, where: str) -> None:
    """Every bound and choice must make a valid spec, with constraint partners at their most favourable ends."""
    partners = {}
    for q in params.values():
        if q is p or q.constraint is None:
            continue
        op, target = _RELATION.match(q.constraint).groups()
        if target == p.name:
            partners[q.name] = q.low if op[0] == "<" else q.high
    if p.constraint is not None:  # the sampler clamps p against its target, so check the clamped ends
        op, target = _RELATION.match(p.constraint).groups()
        if target in params:
            partners[target] = params[target].high if op[0] == "<" else params[target].low
        p = _clamp(p, {target: partners.get(target, _spec_value(spec, target))})
    values = (
        [("low", p.low), ("high", p.high)]
        if p.type in ("float", "int")
        else [("choice", c) for c in p.options]
    )
    if p.default is not None:
        values.append(("default", p.default))
    for label, value in values:
        try:
            with_values(spec, {**partners, p.name: value})
        except UserError as exc:
            inner = str(exc).removeprefix("invalid spec: ")
            raise UserError(f"{where}: {p.name} {label}={value!r} is rejected by the spec: {inner}") from None


def _dependency_order(params: dict[str, ParamSpec], where: str) -> tuple[ParamSpec, ...]:
    """File order, except that a parameter comes after the searched parameters its condition/constraint reads."""
    pending, done = list(params.values()), []
    while pending:
        ready = next(
            (p for p in pending if all(t in {d.name for d in done} for t in _targets(p) if t in params)), None
        )
        if ready is None:
            raise UserError(
                f"{where}: conditions/constraints form a cycle among {', '.join(p.name for p in pending)}"
            )
        pending.remove(ready)
        done.append(ready)
    return tuple(done)


def _warm_start(params: tuple[ParamSpec, ...], sf: SearchSpaceFile, base: dict[str, Any]) -> dict[str, Any]:
    """Popular values (else defaults) that fit the resolved space; parameters whose parents are unknown are skipped."""
    known = {k: v for k, v in base.items() if k not in {p.name for p in params}}
    warm: dict[str, Any] = {}
    for p in params:
        if any(t not in known for t in _targets(p)):
            continue
        domain = _domain(p, known)
        value = sf.popular.get(p.name, p.default)
        if domain is None:
            known[p.name] = base.get(p.name)
        elif value is not None and _contains(domain, value):
            warm[p.name] = known[p.name] = value
    return warm


# ---------------------------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class SearchSpace:
    """The resolved space of one study: parameters in dependency order plus the spec values they may read."""

    model: str
    params: tuple[ParamSpec, ...]
    base: dict[str, Any]
    warm_start: dict[str, Any]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_optuna(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """Static distributions over the full ranges; conditions and constraints need `suggest` (define-by-run)."""
        return {p.name: _distribution(p) for p in self.params}

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one trial define-by-run: inactive parameters are not sampled, constrained ranges are clamped."""
        return self._walk(lambda d: _suggest_one(trial, d))

    def random_sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """Sample with option weights and log scales honoured (what Optuna's samplers cannot do with weights)."""
        return self._walk(lambda d: _draw(d, rng))

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of a finite space (inactive parameters left out, constraints applied)."""
        for p in self.params:
            _grid_values(p, f"search space '{self.model}': grid search")
        rows: list[dict[str, Any]] = [{}]
        for p in self.params:
            expanded = []
            for row in rows:
                domain = _domain(p, {**self.base, **row})
                expanded += (
                    [row] if domain is None else [{**row, p.name: v} for v in _grid_values(domain, "")]
                )
            rows = expanded
        return rows

    def describe(self) -> list[str]:
        """One human line per parameter, for the study log."""
        lines = []
        for p in self.params:
            text = f"{p.name}: {p.type} {_range_text(p)}"
            if p.weights:
                text += f" weights {p.weights}"
            if p.condition is not None:
                text += f"; only when {p.condition.text()}"
            if p.constraint is not None:
                text += f"; must be {p.constraint.strip()}"
            lines.append(text)
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record of exactly what was searched, for tracking and study.json."""
        params = {
            p.name: p.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"name"})
            for p in self.params
        }
        return {"model": self.model, "parameters": params, "base": self.base, "warm_start": self.warm_start}

    def _walk(self, pick: typing.Callable[[ParamSpec], Any]) -> dict[str, Any]:
        """Visit parameters in dependency order so conditions and constraints see their targets' values."""
        values, chosen = dict(self.base), {}
        for p in self.params:
            domain = _domain(p, values)
            if domain is not None:
                chosen[p.name] = values[p.name] = pick(domain)
        return chosen


# ---------------------------------------------------------------------------------------------- sampling helpers


def _domain(p: ParamSpec, values: dict[str, Any]) -> ParamSpec | None:
    """p's range given the values already fixed: None when its condition is off, clamped by its constraint."""
    if p.condition is not None and not any(_same(values[p.condition.param], v) for v in p.condition.values):
        return None
    return _clamp(p, values)


def _clamp(p: ParamSpec, values: dict[str, Any]) -> ParamSpec:
    """p's range narrowed so that its constraint holds against the target's value in `values`."""
    if p.constraint is None:
        return p
    op, target = _RELATION.match(p.constraint).groups()
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
    on_grid = abs(q - round(q)) < 1e-9
    k = round(q) if on_grid else (math.floor(q) if below else math.ceil(q))
    if on_grid and strict:
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


# ---------------------------------------------------------------------------------------------- small helpers


def _shape_problem(p: ParamSpec) -> str | None:
    """What is self-contradictory in one parameter (no spec needed), or None."""
    numeric = p.type in ("float", "int")
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
    if p.constraint is not None and not _RELATION.match(p.constraint):
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
        if p.step is not None and _finite(p.low, p.high) and not _on_grid(p.high, p.low, p.step):
            return f"high={p.high} must be low={p.low} plus a whole number of steps ({p.step})"
    if p.weights is not None:
        if not p.options:
            return "weights only apply to categorical and bool parameters"
        if len(p.weights) != len(p.options):
            return f"weights {p.weights} need one entry per choice ({len(p.options)} choices)"
        if not all(0 < w < math.inf for w in p.weights):
            return f"weights {p.weights} must all be > 0"
    if p.default is not None and not _contains(p, p.default):
        return f"default={p.default!r} is not a value {_range_text(p)}"
    return None


def _contains(p: ParamSpec, value: Any) -> bool:
    """Whether value lies in p's own range/choices/grid (conditions and constraints aside)."""
    if p.type in ("categorical", "bool"):
        return any(_same(value, c) for c in p.options)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if p.type == "int" and not float(value).is_integer():
        return False
    lo, hi = _span(p)
    return lo <= value <= hi and (
        p.step is None or _on_grid(value, p.low if p.low is not None else 0, p.step)
    )


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps True apart from 1 (YAML and JSON values mix them)."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _fits(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return kind == "float" or isinstance(value, int)


def _span(p: ParamSpec) -> tuple[float, float]:
    return (-math.inf if p.low is None else p.low), (math.inf if p.high is None else p.high)


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def _on_grid(value: float, anchor: float, step: float) -> bool:
    q = (value - anchor) / step
    return abs(q - round(q)) < 1e-9


def _targets(p: ParamSpec) -> list[str]:
    targets = [p.condition.param] if p.condition is not None else []
    return targets + ([_RELATION.match(p.constraint)[2]] if p.constraint is not None else [])


def _range_text(p: ParamSpec) -> str:
    if p.type in ("categorical", "bool"):
        return f"of {p.options}"
    scale = " (log)" if p.log else f" (step {p.step})" if p.step is not None else ""
    return f"in [{p.low}, {p.high}]{scale}"


def _spec_fields(model: type[BaseModel], prefix: str = "") -> dict[str, str]:
    """Dotted path -> 'float' | 'int' | 'bool' | 'other' for every leaf field of the spec."""
    out = {}
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.update(_spec_fields(ann, f"{prefix}{name}."))
            continue
        union = typing.get_origin(ann) in (typing.Union, types.UnionType)
        args = [a for a in typing.get_args(ann) if a is not type(None)] if union else [ann]
        out[f"{prefix}{name}"] = (
            args[0].__name__ if len(args) == 1 and args[0] in (bool, int, float) else "other"
        )
    return out


def _spec_value(spec: ExperimentSpec, dotted: str) -> Any:
    node: Any = spec
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _did_you_mean(name: str, candidates: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _one_line(exc: ValidationError, name: str | None = None) -> str:
    """pydantic's first error as `parameter: what`, with close-match hints for unknown keys."""
    error = exc.errors()[0]
    parts = [str(p) for p in error["loc"] if p not in ("bool", "int", "float", "str", "none")]
    if parts[:1] == ["parameters"] and len(parts) > 1:
        name, parts = parts[1], parts[2:]
    where = ".".join(parts)
    if error["type"] == "value_error":
        msg = error["msg"].removeprefix("Value error, ")
    elif error["type"] == "extra_forbidden":
        keys = set(ParamSpec.model_fields) | set(SearchSpaceFile.model_fields) | {"param", "equals", "in"}
        msg = f"{where}: unknown key{_did_you_mean(parts[-1], keys)}"
    else:
        msg = f"{where}: {error.get('input')!r} is not allowed ({error['msg'][0].lower() + error['msg'][1:]})"
    return msg if not name or msg.startswith(f"{name}:") else f"{name}: {msg}"
