"""What `mal` and `automl` share without importing each other: one-line user errors, safe YAML, dotted
overrides, error wording, atomic files and the Ray connection."""

from plumbing.cli import (
    CONTEXT,
    OVERRIDES_HELP,
    SPEC_HELP,
    Overrides,
    SpecOption,
    command_line,
    fail,
    run_cli,
)
from plumbing.errors import UserError
from plumbing.fields import leaf_fields, value_at
from plumbing.files import atomic_write_text, file_hash, is_remote
from plumbing.overrides import apply_overrides, parse_override, set_values
from plumbing.ray_session import connect_ray
from plumbing.safe_yaml import dump_yaml, read_mapping, safe_yaml, yaml_problem
from plumbing.wording import Shown, close_match, describe, did_you_mean, printable, suggest_field

__all__ = [
    "CONTEXT",
    "OVERRIDES_HELP",
    "Overrides",
    "SPEC_HELP",
    "SpecOption",
    "Shown",
    "UserError",
    "apply_overrides",
    "atomic_write_text",
    "close_match",
    "command_line",
    "connect_ray",
    "describe",
    "did_you_mean",
    "dump_yaml",
    "fail",
    "file_hash",
    "is_remote",
    "leaf_fields",
    "parse_override",
    "printable",
    "read_mapping",
    "run_cli",
    "safe_yaml",
    "set_values",
    "suggest_field",
    "value_at",
    "yaml_problem",
]
