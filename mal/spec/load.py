"""A spec from its YAML file plus `section.field=value` overrides, validated strictly; dotted values set on it.

Every problem of a spec is reported at once (a count, then one line each), so a TAO file is fixed in one go."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from mal.spec.schema import ExperimentSpec
from mal.spec.tao import FOREIGN_NAMES, check_layout, pop_required, required_problem, unused_fields
from plumbing.errors import UserError
from plumbing.overrides import apply_overrides, set_values
from plumbing.safe_yaml import read_mapping
from plumbing.wording import describe, suggest_field

log = logging.getLogger("mal")
MAX_LISTED = 25  # a file of junk has hundreds of problems; the first ones say what is wrong


def spec_problems(exc: ValidationError) -> list[str]:
    """One line per problem, one problem per key (pydantic reports each member of a union that failed)."""
    lines, seen = [], set()
    for error in exc.errors():
        where = tuple(str(p) for p in error["loc"])
        if where in seen:
            continue
        seen.add(where)
        dotted_key = next((p for p in where if "." in p), None)
        if error["type"] == "extra_forbidden" and dotted_key:
            lines.append(f"{'.'.join(where)}: unknown key ({dotted_key!r} has a dot: in a file, nest it as sections)")
            continue
        lines.append(describe(error, lambda dotted: suggest_field(dotted, ExperimentSpec, aliases=FOREIGN_NAMES)))
    return lines


def validate_dict(data: dict[str, Any], missing: list[str] | None = None) -> ExperimentSpec:
    """A spec from plain data. Its problems, and the `missing` required keys, are one UserError: one line for
    one problem, else a count and a line each."""
    problems = [required_problem(missing)] if missing else []
    spec = None
    try:
        spec = ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        problems += spec_problems(exc)
    if problems:
        if len(problems) > MAX_LISTED:
            problems = [*problems[:MAX_LISTED], f"... and {len(problems) - MAX_LISTED} more"]
        raise UserError.of_problems("invalid spec", problems)
    return spec


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Spec file (or defaults) + overrides, validated. Paths are checked separately per action.

    TAO fields that are accepted but not used here are named once, in one warning line."""
    data = read_mapping(path, "spec file", "a mapping of sections") if path else {}
    if path:
        check_layout(data, path)
    data = apply_overrides(data, list(overrides or []))
    spec = validate_dict(data, pop_required(data))
    unused = unused_fields(data)
    if unused:
        log.warning("accepted, not used here: %s", "; ".join(unused))
    return spec


def with_values(spec: ExperimentSpec, values: dict[str, Any]) -> ExperimentSpec:
    """A copy of `spec` with dotted-path values set (used for trials), validated again."""
    return validate_dict(set_values(spec.to_dict(), values))
