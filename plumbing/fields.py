"""The leaf fields of a typed (pydantic) spec as dotted paths, and reading one by its dotted path."""

from __future__ import annotations

import typing
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


def _numeric(annotation: Any) -> bool:
    """Whether a field's type takes numbers (int, float, or a list or optional of them) and not booleans."""
    if annotation is bool:
        return False
    if annotation in (int, float):
        return True
    args = [a for a in typing.get_args(annotation) if isinstance(a, type) or typing.get_origin(a)]
    return bool(args) and bool not in args and any(_numeric(a) for a in args)


def bool_as_number(annotation: Any, value: Any) -> bool:
    """A boolean given for a number field: pydantic reads True as 1, and YAML reads `yes` as True, so
    `batch_size: yes` would quietly train with 1. Validators refuse it with this test."""
    values = value if isinstance(value, list) else [value]
    return _numeric(annotation) and any(isinstance(v, bool) for v in values)
