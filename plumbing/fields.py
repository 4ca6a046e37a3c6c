"""The leaf fields of a typed (pydantic) spec as dotted paths, and reading one by its dotted path."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


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


class StrictModel(BaseModel):
    """A spec section: unknown keys refused, NaN/inf refused (they pass `gt`/`ge`-free checks and only fail
    deep inside training), and a boolean never read as a number."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        if bool_as_number(cls.model_fields[info.field_name].annotation, value):
            raise ValueError(f"{value!r} is not a number (yes/no/true/false are read as booleans)")
        return value
