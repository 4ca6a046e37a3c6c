"""Fuzzing with TAO's own files: a valid spec (the skill bank's train template) and a valid TAO train schema,
mutated at random places, must load or end in a UserError: one line, or a line counting the problems and one
line each. Never any other exception."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.space import load_space_file
from mal.spec import load_spec
from plumbing.errors import UserError
from tests.conftest import ROOT

TAO = ROOT.parent / "shared" / "reference" / "tao-files"
pytestmark = pytest.mark.skipif(not TAO.is_dir(), reason="the TAO reference files are not here")
SETTINGS = settings(
    max_examples=120, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck)
)
VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=True),
        st.sampled_from(["", "???", "ddp", "fsdp", "coco", "epoch", "> 0", "/ 8", "< depends_on", "float", "int",
                         "list", "categorical", "train.lr", "x.y", "vit-mae-base/16"]), st.text(max_size=8),
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6) | st.sampled_from(["properties", "type", "default", "minimum", "maximum", "enum"]), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    return found


@st.composite
def mutated(draw, original: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(data)
        if not paths:
            break
        *parents, leaf = draw(st.sampled_from(paths))
        node = data
        for part in parents:
            node = node[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del node[leaf]
        elif action == "add" and isinstance(node[leaf], dict):
            node[leaf][draw(st.text(max_size=8) | st.just("a.b"))] = draw(VALUES)
        else:
            node[leaf] = draw(VALUES)
    return data


def _one_line_or_counted(exc: UserError) -> None:
    text = str(exc)
    assert "\n" not in text and all("\n" not in d for d in exc.details), text
    if exc.details:
        count = int(re.search(r"(\d+) problems$", text)[1])
        listed = len(exc.details) if not exc.details[-1].startswith("... and") else count
        assert count == listed and count > 1, text


SPEC = yaml.safe_load((TAO / "mal_spec_template_train.yaml").read_text())
SCHEMA = json.loads((TAO / "mal_train.schema.json").read_text())


@SETTINGS
@given(data=mutated(SPEC))
def test_a_mutated_tao_spec_loads_or_fails_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_spec(path)
    except UserError as exc:
        _one_line_or_counted(exc)


@SETTINGS
@given(data=mutated(SCHEMA))
def test_a_mutated_tao_schema_loads_or_fails_in_one_line(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("schema") / "train.schema.json"
    path.write_text(json.dumps(data))
    try:
        load_space_file(path)
    except UserError as exc:
        _one_line_or_counted(exc)
