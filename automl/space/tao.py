"""TAO's `train.schema.json` (nested `properties` with automl_* keys, math_cond, depends_on) read into the
layout of our search-space files; leaves that cannot be searched are left out, or refused when a default."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from automl.space.schema import RELATION
from plumbing.errors import UserError

_TAO_TYPES = {
    "float": "float", "number": "float", "int": "int", "integer": "int", "bool": "bool", "boolean": "bool",
    "categorical": "categorical", "ordered": "categorical", "ordered_int": "categorical",
}  # fmt: skip


def from_tao_schema(schema: dict[str, Any], path: Path) -> dict[str, Any]:
    """TAO's nested `properties` and automl_* keys -> our file layout; unsearchable leaves are left out."""
    defaults = list(schema.get("automl_default_parameters") or [])
    disabled = list(schema.get("automl_disabled_parameters") or [])
    params = {}
    for name, prop in _leaves(schema["properties"], lambda prop: prop.get("properties") if isinstance(prop, dict) else None):
        if not isinstance(prop, dict):
            continue
        if prop.get("automl_enabled") is False:
            disabled.append(name)
        converted = _tao_param(name, prop)
        if isinstance(converted, str):
            if name in defaults:
                raise UserError(f"TAO schema {path}: {name} is in automl_default_parameters but {converted}")
            continue
        params[name] = converted
    model = (schema.get("default") or {}).get("model_name") or path.name.split(".")[0]
    popular = dict(_leaves(schema.get("popular") or {}, lambda value: value))
    return {"model": model, "default_parameters": defaults, "disabled_parameters": disabled,
            "popular": popular, "parameters": params}  # fmt: skip


def _leaves(tree: dict[str, Any], below: Callable[[Any], Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, leaf) of a nested mapping; `below(value)` is the mapping under a value, None at a leaf."""
    for key, value in tree.items():
        nested = below(value)
        if isinstance(nested, dict):
            yield from _leaves(nested, below, f"{prefix}{key}.")
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
        match = RELATION.match(text) if isinstance(text, str) else None
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
