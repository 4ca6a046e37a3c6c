"""A spec from its YAML file plus `section.field=value` overrides, validated strictly; dotted values set on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mal.spec.schema import ExperimentSpec
from plumbing.errors import UserError
from plumbing.overrides import apply_overrides, set_values
from plumbing.safe_yaml import read_mapping
from plumbing.wording import describe, suggest_field


def validate_dict(data: dict[str, Any]) -> ExperimentSpec:
    """A spec from plain data; the first problem is one UserError line naming the key, value and rule."""
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        problem = describe(exc.errors()[0], lambda where: suggest_field(where, ExperimentSpec))
        raise UserError(f"invalid spec: {problem}") from None


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Spec file (or defaults) + overrides, validated. Paths are checked separately per action."""
    data = read_mapping(path, "spec file", "a mapping of sections") if path else {}
    return validate_dict(apply_overrides(data, list(overrides or [])))


def with_values(spec: ExperimentSpec, values: dict[str, Any]) -> ExperimentSpec:
    """A copy of `spec` with dotted-path values set (used for trials), validated again."""
    return validate_dict(set_values(spec.to_dict(), values))
