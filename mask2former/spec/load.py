"""Mask2Former's spec from its YAML file plus `section.field=value` overrides, validated strictly
(plumbing.spec_reader with this spec's type and TAO tables); dotted values set on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mask2former.spec.schema import ExperimentSpec
from mask2former.spec.tao import FOREIGN_NAMES, UNUSED
from plumbing.spec_reader import SpecReader

READER = SpecReader(ExperimentSpec, aliases=FOREIGN_NAMES, unused=UNUSED, logger="mask2former")


def validate_dict(data: dict[str, Any], missing: list[str] | None = None) -> ExperimentSpec:
    """A spec from plain data; its problems and the `missing` required keys are one UserError."""
    return READER.validate(data, missing)


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Spec file (or defaults) + overrides, validated; inputs are checked per action (spec.preflight)."""
    return READER.load(path, overrides)


def with_values(spec: ExperimentSpec, values: dict[str, Any]) -> ExperimentSpec:
    """A copy of `spec` with dotted-path values set (a trial's), validated again."""
    return READER.with_values(spec, values)
