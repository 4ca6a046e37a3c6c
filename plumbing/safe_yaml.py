"""Reading YAML (and JSON) a user wrote: plain values only, no duplicate keys, every problem one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from plumbing.errors import UserError
from plumbing.wording import printable


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML (plain values only, never Python objects) that also refuses a key written twice, which
    plain YAML resolves silently to the last one (a second `train:` section would drop the first)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` keys may be overridden on purpose
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


MAX_DEPTH = 64  # no spec or search space nests deeper; every walker below may recurse this far
MAX_VALUES = 200_000  # values once aliases are expanded; the largest TAO schema has a few thousand


def check_size(data: Any) -> None:
    """Refuse data nested deeper than MAX_DEPTH or holding more than MAX_VALUES values once YAML aliases are
    expanded (an alias bomb is a few lines that expand to billions). Iterative: it cannot overflow itself."""
    stack, seen = [(data, 1)], 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise yaml.YAMLError(f"more than {MAX_VALUES:,} values once aliases are expanded (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def safe_yaml(text: str) -> Any:
    """Parse YAML from a user: plain values only (a `!!python/...` tag is refused), no duplicate keys, no
    alias bombs or runaway nesting."""
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except (ValueError, TypeError, OverflowError) as exc:  # a standard tag's constructor refusing its text: !!float x
        raise yaml.constructor.ConstructorError(None, None, f"cannot read a tagged value ({exc})") from None
    except RecursionError:
        raise yaml.YAMLError("brackets or sections nested too deeply") from None
    check_size(data)
    return data


def _json(text: str) -> Any:
    try:
        data = json.loads(text)
    except RecursionError:
        raise yaml.YAMLError("brackets nested too deeply") from None
    check_size(data)
    return data


def yaml_problem(exc: yaml.YAMLError, with_line: bool = True) -> str:
    """PyYAML's error as one short line: where (for files), and what."""
    mark = getattr(exc, "problem_mark", None) if with_line else None
    problem = printable(str(getattr(exc, "problem", None) or exc))
    tag = problem.partition("constructor for the tag ")[2].strip("'")
    if tag:
        problem = f"the tag {tag.replace('tag:yaml.org,2002:', '!!')} is not allowed (plain YAML values only)"
    return f"line {mark.line + 1}: {problem}" if mark else problem


def read_mapping(path: str | Path, what: str, holds: str = "a mapping") -> dict[str, Any]:
    """A YAML (or, for .json, JSON) file that must hold a mapping, read safely; an empty file is {}.
    Every problem is one UserError line naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        data = (_json(text) if kind == "JSON" else safe_yaml(text)) or {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid {kind} ({yaml_problem(exc)})") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not {kind}: it is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold {holds}, got {type(data).__name__}")
    return data


def dump_yaml(data: dict[str, Any]) -> str:
    """A spec as YAML in its own field order, so it reads like the template it came from."""
    return yaml.safe_dump(data, sort_keys=False)
