"""A model's experiment spec read the TAO way: a YAML file plus `section.field=value` overrides, `???` values
reported as required, every problem at once (a count, then one line each), and the TAO fields the model
accepts but does not use named once in a warning. Each model brings its spec type and its tables."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plumbing.errors import UserError
from plumbing.overrides import apply_overrides, set_values
from plumbing.safe_yaml import read_mapping
from plumbing.wording import describe, suggest_field

REQUIRED = "???"  # OmegaConf's MISSING: TAO's templates mark the values a user must give with it
MAX_LISTED = 25  # a file of junk has hundreds of problems; the first ones say what is wrong


def pop_required(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Remove every value still `???` (nested too) and return their dotted keys, so one error names them all
    and no such value is ever used (a results_dir of `???` would make a folder of that name)."""
    missing = []
    for key in list(data):
        value = data[key]
        if isinstance(value, dict):
            missing += pop_required(value, f"{prefix}{key}.")
        elif value == REQUIRED or (isinstance(value, list) and REQUIRED in value):
            missing.append(f"{prefix}{key}")
            del data[key]
    return missing


def required_problem(missing: list[str]) -> str:
    keys = ", ".join(missing)
    return f"{keys}: required (`???` in the spec) and not set; give {'it' if len(missing) == 1 else 'each'} in the spec or as key=value"


def other_tao_file(data: dict[str, Any]) -> str | None:
    """What a file of TAO's skill bank is when it is not an experiment spec, with what to do with it."""
    if "properties" in data and ("x_tao_schema" in data or "automl_default_parameters" in data):
        return ("TAO's schema of the spec (schemas/<action>.schema.json): a study reads it as automl.search_space "
                "and `automl space FILE` shows it; give this command a spec such as spec_template_train.yaml")
    if isinstance(data.get("actions"), dict) and not any(isinstance(data.get(s), dict) for s in ("train", "dataset", "model")):
        return "a TAO skill's manifest or skill_info; the specs are the templates it names (spec_template_<action>.yaml)"
    if "autolabel_type" in data:
        return "TAO's auto-label layout; run it with `auto_label generate -e FILE`"
    return None


def unused_fields(data: dict[str, Any], unused: Mapping[str, str]) -> list[str]:
    """The fields of `unused` (dotted key -> why) set in the user's data, each with why."""
    found = []
    for dotted, why in unused.items():
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        active = node.get("enable") if isinstance(node, dict) else node
        if active:  # an empty string, false, 0 or a disabled wandb section asks for nothing
            found.append(f"{dotted} ({why})")
    return found


def _no_layout_rules(data: dict[str, Any], path: Any) -> None:
    """A model without older layouts to point at: only files of another kind are refused."""
    kind = other_tao_file(data)
    if kind:
        raise UserError(f"spec {path} is not an experiment spec: it is {kind}")


@dataclass(frozen=True)
class SpecReader:
    spec_type: type[BaseModel]
    aliases: Mapping[str, str] = field(default_factory=dict)  # other frameworks' leaf names -> the spec's
    unused: Mapping[str, str] = field(default_factory=dict)  # accepted TAO fields nothing reads -> why
    check_layout: Callable[[dict[str, Any], Any], None] = _no_layout_rules  # the file's shape, before its values
    logger: str = "plumbing"

    def problems(self, exc: ValidationError) -> list[str]:
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
            lines.append(describe(error, lambda dotted: suggest_field(dotted, self.spec_type, aliases=self.aliases)))
        return lines

    def validate(self, data: dict[str, Any], missing: list[str] | None = None) -> Any:
        """A spec from plain data. Its problems, and the `missing` required keys, are one UserError: one line
        for one problem, else a count and a line each."""
        problems = [required_problem(missing)] if missing else []
        spec = None
        try:
            spec = self.spec_type.model_validate(data)
        except ValidationError as exc:
            problems += self.problems(exc)
        if problems:
            if len(problems) > MAX_LISTED:
                problems = [*problems[:MAX_LISTED], f"... and {len(problems) - MAX_LISTED} more"]
            raise UserError.of_problems("invalid spec", problems)
        return spec

    def load(self, path: str | Path | None, overrides: list[str] | None = None) -> Any:
        """Spec file (or defaults) + overrides, validated; the TAO fields set but not used, in one warning."""
        data = read_mapping(path, "spec file", "a mapping of sections") if path else {}
        if path:
            self.check_layout(data, path)
        data = apply_overrides(data, list(overrides or []))
        spec = self.validate(data, pop_required(data))
        unused = unused_fields(data, self.unused)
        if unused:
            logging.getLogger(self.logger).warning("accepted, not used here: %s", "; ".join(unused))
        return spec

    def with_values(self, spec: BaseModel, values: dict[str, Any]) -> Any:
        """A copy of `spec` with dotted-path values set (a trial's), validated again."""
        return self.validate(set_values(spec.model_dump(mode="json"), values))
