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
    if "properties" in data:
        data = from_tao_schema(data, path)
    try:
        return SearchSpaceFile.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"search-space file {path}: {one_line(exc)}") from None
