"""What a model's `template` and `schema` commands print: a spec of defaults (it loads back unchanged) and
the spec's JSON Schema with TAO's extras (the defaults, the action's required paths)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from plumbing.safe_yaml import dump_yaml


def template(defaults: BaseModel, title: str, command: str, required: list[str]) -> str:
    """`# <title>: every field at its default`, the keys `command` cannot run without, then the YAML."""
    header = f"# {title}: every field at its default.\n# Required for `{command}`: {', '.join(required)}\n"
    return header + dump_yaml(defaults.model_dump(mode="json"))


def json_schema(spec_type: type[BaseModel], title: str, action: str, required: list[str], **tao: Any) -> dict[str, Any]:
    """JSON Schema of the spec with TAO's `default`, the action's required paths and `x_tao_schema` (plus `tao`)."""
    schema = spec_type.model_json_schema()
    schema["title"] = title
    schema["default"] = spec_type().model_dump(mode="json")
    schema["x_required_for_action"] = required
    schema["x_tao_schema"] = {"action": action, "schema_version": 1, **tao}
    return schema
