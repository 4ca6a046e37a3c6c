"""Reading a search-space file, our YAML or a TAO `train.schema.json`, into the schema; every problem one line."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from automl.space.schema import SearchSpaceFile, one_line
from automl.space.tao import from_tao_schema
from plumbing.errors import UserError
from plumbing.safe_yaml import read_mapping


def load_space_file(path: str | Path) -> SearchSpaceFile:
    """Read a YAML search-space file, or convert a TAO train.schema.json (detected by its `properties`)."""
    path = Path(path)
    data = read_mapping(path, "search-space file")
    where = f"search-space file {path}"
    if "properties" in data:
        action = data.get("x_tao_schema", {}).get("action") if isinstance(data.get("x_tao_schema"), dict) else None
        if action not in (None, "train"):
            raise UserError(
                f"{where} is TAO's schema of the `{action}` action; a study trains, so its space comes from the "
                "train action's schema (schemas/train.schema.json)"
            )
        data = from_tao_schema(data, path)
    elif "parameters" not in data:
        kind = _other_kind(data)
        if kind:
            raise UserError(f"{where} is not a search space (a search-space YAML or TAO's train.schema.json): it is {kind}")
    try:
        return SearchSpaceFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"search-space file {path}: {one_line(exc)}") from None


def _other_kind(data: dict) -> str | None:
    """What a file given as a search space is instead, when it is one of the files a TAO skill ships."""
    if isinstance(data.get("actions"), dict):
        return "a TAO skill's manifest or skill_info (its train action names schemas/train.schema.json)"
    if any(isinstance(data.get(section), dict) for section in ("model", "train", "dataset")):
        return "an experiment spec (give it with -e SPEC)"
    return None
