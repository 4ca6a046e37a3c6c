"""Fuzzing the spec parser: random YAML-ish spec files and random `key=value` overrides may only ever end in a
UserError (one line, exit 2 at the CLI), never in any other exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mal.errors import UserError
from mal.spec import ExperimentSpec, load_spec
from plumbing.fields import leaf_fields

FIELDS = list(leaf_fields(ExperimentSpec))
SECTIONS = sorted({p.split(".")[0] for p in FIELDS})
# Values that probe YAML typing and the validators: numbers at and past their limits, non-finite floats,
# wrong types, nested containers, tags, anchors, and text that is almost YAML.
SCALARS = [
    "0", "1", "-1", "3", "1.5", "1e-5", "1.0e-5", "1e400", "-0.0", ".nan", ".inf", "-.inf", "NaN", "~", "null",
    "true", "no", "''", '""', "abc", "vit-micro/8", "[]", "{}", "[1, 2]", "[0, 0]", "[0.1, .nan]", "[[1]]",
    "{a: 1}", "{low: 1, high: 0}", "!!python/object/apply:os.system [echo]", "!!binary aGk=", "!!float x",
    "&a 1", "*a", "[1,", "{a:", "'unclosed", "a: b: c", "- 1", "|\n  text", "0x1F", "0o17", "1_000",
    "2024-01-01", "\t", "\x00", "é", "💥", "1" * 400,
]  # fmt: skip
VALUES = st.one_of(st.sampled_from(SCALARS), st.text(max_size=20))


def _key(draw_path: str, mutate: str, noise: str) -> str:
    return {"keep": draw_path, "section": draw_path.split(".")[0], "typo": draw_path[:-1] + "x",
            "deeper": f"{draw_path}.x", "noise": noise}[mutate]  # fmt: skip


KEYS = st.builds(
    _key,
    st.sampled_from(FIELDS + SECTIONS),
    st.sampled_from(["keep", "keep", "section", "typo", "deeper", "noise"]),
    st.text(max_size=12),
)
OVERRIDES = st.one_of(
    st.builds(lambda k, sep, v: f"{k}{sep}{v}", KEYS, st.sampled_from(["=", "=", " = ", "==", ":", ""]), VALUES),
    st.text(max_size=40),
)


@st.composite
def yaml_texts(draw) -> str:
    """Spec-shaped YAML: sections holding fields, with random values, indentation slips and junk lines."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        section = draw(st.sampled_from(SECTIONS + ["trian", "results_dir", "- train", "? x", "<<", '"tr\\nain"']))
        lines.append(f"{section}:" + draw(st.sampled_from(["", "", " 5", " []", " &s", " *s", " !!map"])))
        for _ in range(draw(st.integers(0, 4))):
            field = draw(KEYS).rsplit(".", 1)[-1]
            indent = draw(st.sampled_from(["  ", "  ", "    ", "", "\t", " "]))
            lines.append(f"{indent}{field}: {draw(VALUES)}")
        if draw(st.booleans()):
            lines.append(draw(st.text(max_size=30)))
    return "\n".join(lines)


SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _only_user_errors(path, overrides) -> None:
    try:
        load_spec(path, overrides)
    except UserError as exc:
        assert "\n" not in str(exc), f"a user error must be one line: {str(exc)!r}"


@SETTINGS
@given(overrides=st.lists(OVERRIDES, max_size=4))
def test_random_overrides_raise_only_user_errors(overrides):
    _only_user_errors(None, overrides)


@SETTINGS
@given(text=st.one_of(yaml_texts(), st.text(max_size=200)), overrides=st.lists(OVERRIDES, max_size=2))
def test_random_spec_files_raise_only_user_errors(text, overrides, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _only_user_errors(path, overrides)


@pytest.mark.parametrize(
    "text",
    [
        "train: &t {lr: 1.0e-5}\nevaluate: *t\n",  # an anchor re-used where its keys do not belong
        "? [a, b]\n: 1\n",  # an unhashable (list) key
        "train:\n  lr: 1.0e-5\n  lr: 2.0e-5\n",  # a key written twice
        "!!python/object/new:os.system [echo]\n",
        "train:\n  margin_rate: " + "[" * 5000 + "]" * 5000 + "\n",  # deeper than Python's recursion limit
        "a: &a [1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a]\ntrain:\n  margin_rate: [*b, *b, *b, *b, *b, *b]\n",
    ],
)
def test_yaml_corner_cases_are_one_line_user_errors(text, tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_spec(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400


@pytest.mark.parametrize(
    "override",
    ["\n", "results_dir=\x1b\n", "results_dir=!!float x", "train.margin_rate=" + "[" * 5000 + "]" * 5000],
)
def test_overrides_found_by_fuzzing_are_one_line_user_errors(override):
    with pytest.raises(UserError) as info:
        load_spec(None, [override])
    assert "\n" not in str(info.value)


def test_merge_keys_still_work_with_duplicate_key_refusal(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("train:\n  <<: {lr: 1.0e-5, num_epochs: 3}\n  num_epochs: 5\n")
    spec = load_spec(path)
    assert (spec.train.lr, spec.train.num_epochs) == (1.0e-5, 5)
