"""What `mask2former template` and `mask2former schema` print: a spec of defaults, and its JSON Schema."""

from __future__ import annotations

from typing import Any

from mask2former.spec.preflight import required_paths
from mask2former.spec.schema import ExperimentSpec
from plumbing import spec_templates


def _required(action: str) -> list[str]:
    return [k for k, _ in required_paths(ExperimentSpec(), action)]


def template(action: str) -> str:
    """A complete spec of defaults for an action; it loads back unchanged."""
    return spec_templates.template(ExperimentSpec(), f"Mask2Former {action} spec", f"mask2former {action}", _required(action))


def json_schema(action: str) -> dict[str, Any]:
    """JSON Schema of the spec, with the action's required paths and the defaults."""
    return spec_templates.json_schema(
        ExperimentSpec, f"mask2former {action} spec", action, _required(action),
        source="mask2former.spec (pydantic)", network_arch="mask2former",
    )
