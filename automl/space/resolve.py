"""Resolving a study's space: select the searched parameters, apply the user's narrowed ranges, keep int
ranges to the multiples the model needs, and check every bound, choice, condition, constraint and derived
value against the model's spec, so a bad space fails before the first trial instead of in the middle of a
study."""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from pydantic import ValidationError

from automl.registry import TunableModel
from automl.space.sampling import SearchSpace, clamp, domain, nearest
from automl.space.schema import (
    ParamSpec,
    SearchSpaceFile,
    contains,
    on_grid,
    one_line,
    range_text,
    same_value,
    span,
)
from plumbing.errors import UserError
from plumbing.fields import leaf_fields, value_at
from plumbing.wording import did_you_mean

_OVERRIDE_KEYS = ("low", "high", "choices", "weights", "log", "step")
_SEARCH_TYPES = {
    "float": {"float", "int", "categorical"},
    "int": {"int", "categorical"},
    "bool": {"bool", "categorical"},
}


def resolve_space(
    model: TunableModel,
    space_file: SearchSpaceFile,
    spec: Any,
    hyperparameters: list[str] | None = None,
    range_overrides: dict[str, dict[str, Any]] | None = None,
) -> SearchSpace:
    """Select, narrow and check the study's parameters against the model's spec; every problem is one
    UserError line."""
    where = f"search space '{space_file.model}'"
    fields = {path: _kind(annotation) for path, annotation in leaf_fields(model.spec_type).items()}
    names = _select(space_file, hyperparameters, fields, model.name, where)
    overrides = dict(range_overrides or {})
    for name in overrides:
        if name not in names:
            hint = (
                did_you_mean(name, names)
                or f" (searched: {', '.join(names)}; add it to automl.hyperparameters)"
            )
            raise UserError(f"{where}: range_overrides: {name} is not a searched parameter{hint}")
    params = {n: _narrow(space_file.parameters[n], overrides.get(n), where) for n in names}
    multiples = _multiples(model, spec, params)
    params = {n: _on_multiples(p, multiples.get(n), where) for n, p in params.items()}
    for p in params.values():
        _check_kind(p, fields[p.name], where)
    base = {}
    for p in params.values():
        for target in p.targets:
            if target not in fields:
                raise UserError(
                    f"{where}: {p.name}: {target} is not a field of the spec{did_you_mean(target, fields)}"
                )
            if target == p.name:
                raise UserError(
                    f"{where}: {p.name}: a condition or constraint cannot refer to the parameter itself"
                )
            base[target] = value_at(spec, target)
    for p in params.values():
        _check_relations(p, params, base, fields, where)
    for p in params.values():
        _check_in_spec(model, p, params, spec, where)
    ordered = _dependency_order(params, where)
    spec_values = {p.name: value_at(spec, p.name) for p in ordered if p.derive is None}
    return SearchSpace(space_file.model, ordered, base, _warm_start(ordered, space_file, base), spec_values)


def _select(
    sf: SearchSpaceFile, requested: list[str] | None, fields: dict[str, str], model_name: str, where: str
) -> list[str]:
    names = list(dict.fromkeys(sf.default_parameters if requested is None else requested))
    searchable = [n for n in sf.parameters if not sf.is_disabled(n)]
    if not names:
        raise UserError(f"{where}: no parameters selected; choose from {', '.join(searchable)}")
    for name in names:
        if name not in fields:
            other = f" (the file is for model '{sf.model}', the spec is {model_name}'s)" if sf.model != model_name else ""
            raise UserError(f"{where}: {name}: not a field of the spec{did_you_mean(name, fields) or other}")
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
    if p.derive is not None:
        raise UserError(
            f"{where}: range_overrides: {p.name} is derived as {p.derive.strip()}, not sampled; narrow {p.derivation[0]} instead"
        )
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
        body["weights"] = [next((w for c, w in pairs if same_value(c, x)), 1.0) for x in override["choices"]]
    body.update(override)
    if body.get("default") is not None:
        try:
            if not contains(ParamSpec.model_validate({**body, "default": None}), body["default"]):
                del body["default"]  # a default (TAO's) outside the narrowed range is only not a value this study tries
        except ValidationError:
            pass  # the validation below names what is wrong
    try:
        q = ParamSpec.model_validate(body)
    except ValidationError as exc:
        raise UserError(f"{where}: range_overrides: {one_line(exc, p.name)}") from None
    if q.type == "categorical":
        extra = [c for c in q.options if not contains(p, c)]
        if extra:
            raise UserError(
                f"{where}: range_overrides: {p.name}: choices {extra} are not in the file's {p.choices} (overrides may only narrow)"
            )
        return q
    lo, hi = span(p)
    for key, value in (("low", q.low), ("high", q.high)):
        unbounded = value is None and getattr(p, key) is not None
        if unbounded or (value is not None and not lo <= value <= hi):
            raise UserError(
                f"{where}: range_overrides: {p.name}: {key}={value} widens the file's range [{p.low}, {p.high}] (overrides may only narrow)"
            )
    stays_on_grid = q.step is not None and on_grid(q.step, 0, p.step or 1) and contains(p, q.low)
    if p.step is not None and not stays_on_grid:
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
    if p.type in ("float", "int") and p.derive is None:
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
            possible = any(contains(params[target], v) for v in p.condition.values)
            why = f"{target} is searched over {range_text(params[target])}"
        else:
            possible = any(same_value(base[target], v) for v in p.condition.values)
            why = f"{target} is not searched and is {base[target]!r} in the spec"
        if not possible:
            raise UserError(f"{where}: {p.name}: condition {p.condition.text()} can never hold ({why})")
    if p.derive is not None:
        source = p.derivation[0]
        if fields[source] not in ("float", "int") or (source in params and params[source].type not in ("float", "int", "categorical")):
            raise UserError(f"{where}: {p.name}: derive source {source} must be a float or int parameter")
        if source in params and not all(_fits(c, "float") for c in params[source].options):
            raise UserError(f"{where}: {p.name}: derive source {source} must have numeric choices")
    if p.constraint is None:
        return
    op, target = p.relation
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


def _check_in_spec(model: TunableModel, p: ParamSpec, params: dict[str, ParamSpec], spec: Any, where: str) -> None:
    """Every bound and choice must make a valid spec, with constraint partners at their most favourable ends."""
    if p.derive is not None:
        _check_derived_in_spec(model, p, params, spec, where)
        return
    partners = {}
    for q in params.values():
        if q is p or q.constraint is None:
            continue
        op, target = q.relation
        if target == p.name:
            partners[q.name] = q.low if op[0] == "<" else q.high
    if p.constraint is not None:  # the sampler clamps p against its target, so check the clamped ends
        op, target = p.relation
        if target in params:
            partners[target] = params[target].high if op[0] == "<" else params[target].low
        p = clamp(p, {target: partners.get(target, value_at(spec, target))})
    values = (
        [("low", p.low), ("high", p.high)]
        if p.type in ("float", "int")
        else [("choice", c) for c in p.options]
    )
    if p.default is not None:
        values.append(("default", p.default))
    for label, value in values:
        try:
            model.with_values(spec, {**partners, p.name: value})
        except model.user_errors as exc:
            inner = str(exc).removeprefix("invalid spec: ")  # the model's own lead-in; ours says where
            raise UserError(f"{where}: {p.name} {label}={value!r} is rejected by the spec: {inner}") from None


def _check_derived_in_spec(model: TunableModel, p: ParamSpec, params: dict[str, ParamSpec], spec: Any, where: str) -> None:
    """A derived value grows with its source, so the source's ends (or each of its choices) bound it."""
    name = p.derivation[0]
    source = params.get(name)
    if source is None:
        ends = [value_at(spec, name)]
    elif source.type == "categorical":
        ends = source.options
    else:
        ends = [source.low, source.high]
    for end in ends:
        try:
            model.with_values(spec, {name: end, p.name: p.derived_value(end)})
        except model.user_errors as exc:
            inner = str(exc).removeprefix("invalid spec: ")
            raise UserError(
                f"{where}: {p.name} = {p.derive.strip()} = {p.derived_value(end)!r} (at {name}={end!r}) is rejected by the spec: {inner}"
            ) from None


def _multiples(model: TunableModel, spec: Any, params: dict[str, ParamSpec]) -> dict[str, int]:
    """The multiple each int field must keep, as the model states it: under the spec and under each choice
    of a searched categorical parameter (a searched backbone changes a crop's patch size)."""
    multiples = dict(model.value_multiples(spec))
    for p in params.values():
        if p.type not in ("categorical", "bool"):
            continue
        for choice in p.options:
            try:
                variant = model.with_values(spec, {p.name: choice})
            except model.user_errors:
                continue  # the choice itself is refused with its reason by _check_in_spec
            for name, m in model.value_multiples(variant).items():
                multiples[name] = math.lcm(multiples.get(name, 1), m)
    return multiples


def _on_multiples(p: ParamSpec, multiple: int | None, where: str) -> ParamSpec:
    """An int range kept to the multiples the spec needs (a crop of whole patches), so that no trial draws a
    value the spec refuses: low rounded up, high down, and the step made a multiple too."""
    if not multiple or multiple == 1 or p.type != "int" or p.derive is not None or p.low is None or p.high is None:
        return p
    step = int(p.step or 1)
    if int(p.low) % multiple == 0 and step % multiple == 0:
        return p
    if p.log:
        raise UserError(
            f"{where}: {p.name}: the spec takes only multiples of {multiple}, which a log scale cannot keep; drop log or give choices"
        )
    grid = math.lcm(step, multiple)
    low = next((v for v in range(int(p.low), int(p.low) + grid, step) if v % multiple == 0), None)
    if low is None or low > p.high:
        raise UserError(f"{where}: {p.name}: no value {range_text(p)} is a multiple of {multiple}, which the spec needs")
    high = low + (int(p.high) - low) // grid * grid
    if high == low:
        raise UserError(
            f"{where}: {p.name}: only {low} {range_text(p)} is a multiple of {multiple}, which the spec needs; widen the range"
        )
    q = p.model_copy(update={"low": low, "high": high, "step": grid})
    return q if q.default is None or contains(q, q.default) else q.model_copy(update={"default": None})


def _dependency_order(params: dict[str, ParamSpec], where: str) -> tuple[ParamSpec, ...]:
    """File order, except that a parameter comes after the searched parameters its condition/constraint reads."""
    pending, done = list(params.values()), []
    while pending:
        ready = next(
            (p for p in pending if all(t in {d.name for d in done} for t in p.targets if t in params)), None
        )
        if ready is None:
            raise UserError(
                f"{where}: conditions/constraints form a cycle among {', '.join(p.name for p in pending)}"
            )
        pending.remove(ready)
        done.append(ready)
    return tuple(done)


def _warm_start(params: tuple[ParamSpec, ...], sf: SearchSpaceFile, base: dict[str, Any]) -> dict[str, Any]:
    """Popular values (else defaults) moved onto the resolved ranges; parameters whose parents are unknown are
    skipped."""
    known = {k: v for k, v in base.items() if k not in {p.name for p in params}}
    warm: dict[str, Any] = {}
    for p in params:
        if any(t not in known for t in p.targets):
            continue
        allowed = domain(p, known)
        value = sf.popular.get(p.name, p.default)
        if allowed is None:
            known[p.name] = base.get(p.name)
        elif p.derive is not None:
            warm[p.name] = known[p.name] = p.derived_value(known[p.derivation[0]])
        elif value is not None and (fitted := nearest(allowed, value)) is not None:
            warm[p.name] = known[p.name] = fitted
    return warm


def _fits(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return kind == "float" or isinstance(value, int)


def _kind(annotation: Any) -> str:
    """'float' | 'int' | 'bool' for a plain (or optional) number or flag field, else 'other'."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    return args[0].__name__ if len(args) == 1 and args[0] in (bool, int, float) else "other"
