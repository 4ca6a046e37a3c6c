"""TAO's `train.schema.json` (nested `properties` with automl_* keys, math_cond, depends_on) read into the
layout of our search-space files, with TAO's semantics:

- a leaf is searched by default when the schema lists it in `automl_default_parameters` or marks it
  `automl_enabled: true`; any other convertible leaf is searched when the user names it. Only a leaf's own
  `automl_enabled: false` (or its exact name in `automl_disabled_parameters`) disables it: whole sections in
  that list do not (TAO decides per leaf);
- a leaf without a bound is sampled around its default: floats from default/10 to default*10, ints from
  default//2 to default*2 (an infinite bound counts as none);
- `math_cond` `> c`, `< c`, `/ N` (a multiple of N), `^ N` (powers of N) and `< depends_on` relations;
- `depends_on` with `/ N`: an int leaf derived as the source's value // N in each trial (TAO's rule in
  `generate_automl_param_rec_value`), not sampled on its own;
- the model is `x_tao_schema.network_arch`.

A leaf that cannot be searched (a list, a free string, an unsupported condition, a fixed range) is left out
with a note; it never rejects the file. A schema whose own shape is wrong (`properties` not a mapping, a
list of names that is not a list) is one UserError line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from automl.space.schema import RELATION, ParamSpec, contains, one_line
from plumbing.errors import UserError

_TAO_TYPES = {
    "float": "float", "number": "float", "int": "int", "integer": "int", "bool": "bool", "boolean": "bool",
    "categorical": "categorical", "ordered": "categorical", "ordered_int": "categorical",
}  # fmt: skip
_NUMERIC_COND = re.compile(r"^\s*(<=|>=|<|>|/|\^)\s*([-+]?[\d.]+(?:[eE][-+]?\d+)?)\s*$")
_OP_ONLY = re.compile(r"^\s*(<=|>=|<|>)\s*(depends_on)?\s*$")
_MAX_POWERS = 64


def from_tao_schema(schema: dict[str, Any], path: Path) -> dict[str, Any]:
    """TAO's nested `properties` and automl_* keys -> our file layout, with a note per leaf left out."""
    where = f"TAO schema {path}"
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        raise UserError(f"{where}: `properties` must be a mapping of sections, got {type(properties).__name__}")
    listed_defaults = _names(schema, "automl_default_parameters", where)
    listed_disabled = _names(schema, "automl_disabled_parameters", where)
    notes: list[str] = []
    params: dict[str, dict[str, Any]] = {}
    enabled, disabled = [], []
    for name, prop in _leaves(properties, notes):
        flag = prop.get("automl_enabled")
        if flag is False or (name in listed_disabled and flag is not True):
            disabled.append(name)
            continue
        converted = _tao_param(name, prop)
        if converted is None:
            continue
        if isinstance(converted, str):
            notes.append(f"{name}: left out, {converted}")
            continue
        params[name] = converted
        if flag is True:
            enabled.append(name)
    defaults = []
    for name in dict.fromkeys(listed_defaults + enabled):
        if name in params:
            defaults.append(name)
        elif name not in {n.split(":")[0] for n in notes}:
            notes.append(f"{name}: in automl_default_parameters but not a searchable leaf of the schema")
    popular = {}
    for name, value in _flat(schema.get("popular")):
        if name in params and not contains(ParamSpec.model_validate(params[name]), value):
            notes.append(f"{name}: popular value {value!r} is outside its range; not used")
        elif isinstance(value, bool | int | float | str):
            popular[name] = value
    return {"model": _model_name(schema, path), "default_parameters": defaults, "disabled_parameters": disabled,
            "popular": popular, "parameters": params, "notes": notes}  # fmt: skip


def _names(schema: dict[str, Any], key: str, where: str) -> list[str]:
    value = schema.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError(f"{where}: `{key}` must be a list of dotted names, got {str(value)[:80]!r}")
    return value


def _model_name(schema: dict[str, Any], path: Path) -> str:
    info = schema.get("x_tao_schema") if isinstance(schema.get("x_tao_schema"), dict) else {}
    default = schema.get("default") if isinstance(schema.get("default"), dict) else {}
    for name in (info.get("network_arch"), info.get("model"), default.get("model_name")):
        if isinstance(name, str) and name:
            return name
    return path.name.split(".")[0]


def _leaves(tree: dict[str, Any], notes: list[str], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(dotted name, property) of every leaf; a property that is not a mapping is noted and skipped."""
    for key, prop in tree.items():
        name = f"{prefix}{key}"
        if str(key).startswith("automl_") and not isinstance(prop, dict):
            continue  # TAO's own metadata next to the properties, not a field
        if not isinstance(prop, dict):
            notes.append(f"{name}: left out, its property is a {type(prop).__name__}, not a mapping")
        elif "properties" in prop:
            if isinstance(prop["properties"], dict):
                yield from _leaves(prop["properties"], notes, f"{name}.")
            else:
                notes.append(f"{name}: left out, its `properties` is a {type(prop['properties']).__name__}")
        else:
            yield name, prop


def _flat(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flat(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix[:-1], tree


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tao_param(name: str, prop: dict[str, Any]) -> dict[str, Any] | str | None:
    """A TAO property as a ParamSpec body, why it cannot be searched, or None for free text (a path, a name:
    never a hyperparameter, so not worth a note)."""
    kind = prop.get("value_type") or prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    enum = prop.get("enum", prop.get("valid_options"))
    if enum is not None and not (isinstance(enum, list) and enum and all(isinstance(c, bool | int | float | str) for c in enum)):
        return f"its enum {str(enum)[:60]} is not a list of plain values"
    if kind == "string" and not enum:
        return None
    if not isinstance(kind, str) or (kind not in _TAO_TYPES and not (kind == "string" and enum)):
        return f"its TAO type {str(kind)[:40]!r} cannot be searched"
    default = prop.get("default")
    body: dict[str, Any] = {"name": name, "type": "categorical" if enum else _TAO_TYPES[kind]}
    if enum:
        weights = prop.get("option_weights")
        body.update(choices=enum, weights=weights if isinstance(weights, list) and weights else None)
    elif body["type"] == "categorical":
        return f"its TAO type {kind!r} has no enum of options"
    elif body["type"] != "bool" and not _derives(prop):  # a derived leaf is never sampled: no range needed
        problem = _bounds(body, prop.get("minimum"), prop.get("maximum"), default)
        if problem:
            return problem
    problem = _tao_math_cond(body, prop.get("math_cond"), prop.get("depends_on"))
    if problem:
        return problem
    if body.get("low") is not None and body.get("high") is not None and body["low"] >= body["high"]:
        return f"its range is fixed at {body['low']}" if body["low"] == body["high"] else "its range is empty"
    problem = _our_keys(body, prop)
    if problem:
        return problem
    try:
        p = ParamSpec.model_validate(body)
    except ValidationError as exc:
        return one_line(exc, name).removeprefix(f"{name}: ")
    # TAO never samples its default, so a default outside the range is only a default, not a reason to refuse
    if isinstance(default, bool | int | float | str) and contains(p, default):
        body["default"] = default
    return body


def _our_keys(body: dict[str, Any], prop: dict[str, Any]) -> str | None:
    """What TAO's layout has no key for, as `mal schema --format tao` writes it: x_log, x_step, x_condition."""
    extra = {key: prop[key] for key in ("x_log", "x_step", "x_condition") if key in prop}
    if "x_log" in extra and not isinstance(extra["x_log"], bool):
        return f"its x_log {str(extra['x_log'])[:40]!r} is not true or false"
    if "x_step" in extra and not _number(extra["x_step"]):
        return f"its x_step {str(extra['x_step'])[:40]!r} is not a number"
    if "x_condition" in extra and not isinstance(extra["x_condition"], dict):
        return f"its x_condition {str(extra['x_condition'])[:40]!r} is not a mapping"
    body.update({key.removeprefix("x_"): value for key, value in extra.items()})
    return None


def _bounds(body: dict[str, Any], low: Any, high: Any, default: Any) -> str | None:
    """minimum/maximum as low/high; a missing or infinite one is taken around the default (TAO's ÷10..×10 for
    floats; ÷2..×2 for ints)."""
    for label, value in (("minimum", low), ("maximum", high)):
        if value is not None and not _number(value):
            return f"its {label} {str(value)[:40]!r} is not a number"
    low = low if low is not None and math.isfinite(low) else None
    high = high if high is not None and math.isfinite(high) else None
    if low is None or high is None:
        if not _number(default) or default == 0 or not math.isfinite(default):
            return f"it has no range and no non-zero default to search around ({default!r})"
        is_int = body["type"] == "int"
        # 12 significant digits: 1e-6 x 10 is 9.999999999999999e-06 in floats
        near = sorted((default // 2, default * 2) if is_int else (float(f"{default / 10:.12g}"), float(f"{default * 10:.12g}")))
        low = near[0] if low is None else low
        high = near[1] if high is None else high
        if is_int and low == high:
            high = low + 1
    body.update(low=low, high=high)
    return None


def _derives(prop: dict[str, Any]) -> bool:
    cond, depends_on = prop.get("math_cond"), prop.get("depends_on")
    numeric = _NUMERIC_COND.match(cond) if isinstance(cond, str) else None
    return bool(isinstance(depends_on, str) and depends_on.strip() and numeric and numeric[1] == "/")


def _derived(body: dict[str, Any], source: str, n: str) -> str | None:
    """TAO's `depends_on` with `/ N`: the int leaf is the source's value // N in each trial, never sampled."""
    if body["type"] != "int" or not float(n).is_integer() or float(n) < 1:
        return f"it is derived as {source} // {n} in TAO, which needs an int parameter and a whole N >= 1"
    for key in ("low", "high"):
        body.pop(key, None)
    body["derive"] = f"{source} // {int(float(n))}"
    return None


def _tao_math_cond(body: dict[str, Any], cond: Any, depends_on: Any) -> str | None:
    """TAO's math_cond/depends_on: relational -> constraint; `/ N`, `^ N`, `> c`, `< c` -> the range."""
    if cond is not None and not isinstance(cond, str):
        return f"its math_cond {str(cond)[:40]!r} is not text"
    if depends_on is not None and not isinstance(depends_on, str):
        return f"its depends_on {str(depends_on)[:40]!r} is not a parameter name"
    for text in (cond, depends_on):
        match = RELATION.match(text) if text else None
        if match and match[2] != "depends_on":
            body["constraint"] = f"{match[1]} {match[2]}"
            return None
    op_only = _OP_ONLY.match(cond) if cond else None
    if op_only and depends_on:
        body["constraint"] = f"{op_only[1]} {depends_on.strip()}"
        return None
    numeric = _NUMERIC_COND.match(cond) if cond else None
    if depends_on and depends_on.strip() and numeric and numeric[1] == "/":
        return _derived(body, depends_on.strip(), numeric[2])
    if not cond:
        return None
    if not numeric or body["type"] not in ("float", "int"):
        return f"its math_cond {cond!r} is not supported"
    op, c = numeric[1], float(numeric[2])
    is_int = body["type"] == "int"
    low, high = body["low"], body["high"]
    if op == "/":
        if not is_int or c <= 0 or not c.is_integer():
            return f"its math_cond {cond!r} (a multiple of N) needs an int parameter and a whole N > 0"
        body.update(step=int(c), low=math.ceil(low / c) * int(c), high=math.floor(high / c) * int(c))
    elif op == "^":
        if not is_int or c < 2 or not c.is_integer():
            return f"its math_cond {cond!r} (powers of N) needs an int parameter and a whole N >= 2"
        powers = [int(c) ** k for k in range(_MAX_POWERS) if low <= int(c) ** k <= high]
        if len(powers) < 2:
            return f"its math_cond {cond!r} leaves fewer than two powers in [{low}, {high}]"
        body.update(type="categorical", choices=powers)
        del body["low"], body["high"]
    elif op in (">", ">="):
        strict = c + 1 if is_int else math.nextafter(c, math.inf)
        body["low"] = max(low, strict if op == ">" else c)
    else:
        strict = c - 1 if is_int else math.nextafter(c, -math.inf)
        body["high"] = min(high, strict if op == "<" else c)
    return None
