"""What `mal template` and `mal schema` print: a spec of defaults, and its JSON Schema for TAO."""

from __future__ import annotations

from typing import Any

from mal.spec.preflight import required_paths
from mal.spec.schema import ExperimentSpec


def template(action: str) -> str:
    """A complete spec of defaults for an action; it loads back unchanged."""
    required = ", ".join(k for k, _ in required_paths(ExperimentSpec(), action))
    header = f"# MAL {action} spec: every field at its default.\n# Required for `mal {action}`: {required}\n"
    return header + ExperimentSpec().to_yaml()


def json_schema(action: str) -> dict[str, Any]:
    """JSON Schema of the spec, with the action's required paths and the defaults as TAO ships them."""
    schema = ExperimentSpec.model_json_schema()
    schema["title"] = f"mal {action} spec"
    schema["default"] = ExperimentSpec().to_dict()
    schema["x_required_for_action"] = [k for k, _ in required_paths(ExperimentSpec(), action)]
    schema["x_tao_schema"] = {"action": action, "schema_version": 1, "source": "mal.spec (pydantic)"}
    return schema
