"""What `mal template` and `mal schema` print: a spec of defaults, and its JSON Schema for TAO."""

from __future__ import annotations

from typing import Any

from mal.spec.preflight import required_paths
from mal.spec.schema import ExperimentSpec
from plumbing import spec_templates


def _required(action: str) -> list[str]:
    return [k for k, _ in required_paths(ExperimentSpec(), action)]


def template(action: str) -> str:
    """A complete spec of defaults for an action; it loads back unchanged."""
    return spec_templates.template(ExperimentSpec(), f"MAL {action} spec", f"mal {action}", _required(action))


def json_schema(action: str) -> dict[str, Any]:
    """JSON Schema of the spec, with the action's required paths and the defaults as TAO ships them."""
    return spec_templates.json_schema(ExperimentSpec, f"mal {action} spec", action, _required(action), source="mal.spec (pydantic)")
