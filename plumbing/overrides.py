"""`section.field=value` command-line overrides (TAO style): parsing, applying, and setting dotted values."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import yaml

from plumbing.errors import UserError
from plumbing.safe_yaml import safe_yaml, yaml_problem


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.field=value` -> (['section', 'field'], YAML-typed value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
        raise UserError(f"malformed override {text!r}: expected section.field=value, e.g. train.lr=1e-5")
    try:
        value = safe_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(
            f"malformed override {text!r}: the value is not valid YAML ({yaml_problem(exc, with_line=False)})"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key}: {raw!r} is not allowed (must be a finite number)")
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each override in the nested mapping `data` (sections are created as needed), in order."""
    for text in overrides:
        path, value = parse_override(text)
        _set(data, path, value, f"override {text!r}")
    return data


def set_values(data: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`data` (a spec as a plain mapping) with dotted-path values set, as overrides would set them."""
    for dotted, value in values.items():
        _set(data, dotted.split("."), value, f"{dotted}={value!r}")
    return data


def _set(data: dict[str, Any], path: list[str], value: Any, what: str) -> None:
    node = data
    for i, part in enumerate(path[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"{what}: {'.'.join(path[: i + 1])} is not a section")
        node = child
    node[path[-1]] = value
