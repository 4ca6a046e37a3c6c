"""MAL's spec from its YAML file plus `section.field=value` overrides, validated strictly (plumbing.spec_reader
with MAL's spec type and TAO tables); dotted values set on it.

Every problem of a spec is reported at once (a count, then one line each), so a TAO file is fixed in one go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mal.spec.schema import ExperimentSpec
from mal.spec.tao import FOREIGN_NAMES, UNUSED, check_layout
from plumbing.spec_reader import SpecReader

READER = SpecReader(ExperimentSpec, aliases=FOREIGN_NAMES, unused=UNUSED, check_layout=check_layout, logger="mal")


def validate_dict(data: dict[str, Any], missing: list[str] | None = None) -> ExperimentSpec:
    """A spec from plain data; its problems and the `missing` required keys are one UserError."""
    return READER.validate(data, missing)


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Spec file (or defaults) + overrides, validated. Paths are checked separately per action.

    TAO fields that are accepted but not used here are named once, in one warning line."""
    return READER.load(path, overrides)


def with_values(spec: ExperimentSpec, values: dict[str, Any]) -> ExperimentSpec:
    """A copy of `spec` with dotted-path values set (used for trials), validated again."""
    return READER.with_values(spec, values)
