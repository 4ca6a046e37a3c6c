"""The leaf fields of a typed (pydantic) spec as dotted paths, and reading one by its dotted path."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def leaf_fields(model: type[BaseModel], prefix: str = "") -> dict[str, Any]:
    """Dotted path -> annotation of every field that is not itself a section (sections are walked into)."""
    leaves: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            leaves.update(leaf_fields(annotation, f"{prefix}{name}."))
        else:
            leaves[f"{prefix}{name}"] = annotation
    return leaves


def value_at(spec: Any, dotted: str) -> Any:
    """The value of a spec field named by its dotted path (`train.lr`)."""
    node = spec
    for part in dotted.split("."):
        node = getattr(node, part)
    return node
