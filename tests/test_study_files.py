"""Study files are not trusted blindly: `automl status`, `resume` and `report` on an empty, cut-short or
hand-edited study.json or leaderboard.csv end in one line and exit code 2; a fuzz test edits study.json at a
random place. Bad --model references are one line too."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl.space import SearchSpace
from automl.space.schema import ParamSpec
from automl.state import StudyState, TrialRecord

SETTINGS = {
    "model": "mal", "model_ref": "mal", "algorithm": "asha", "metric": "mIoU", "mode": "max", "max_trials": 2,
    "max_epochs": 2, "grace_period": 1, "reduction_factor": 2, "max_concurrent": 1, "cpus_per_trial": 1.0,
    "gpus_per_trial": 0.0, "workers_per_trial": 1, "seed": 0, "max_failures": 1,
}  # fmt: skip


def _write_study(folder: Path) -> Path:
    """A study folder as the driver leaves it after two trials (written by the real StudyState)."""
    space = SearchSpace("mal", (ParamSpec(name="train.lr", type="float", low=1e-5, high=1e-3, log=True),), {}, {})
    state = StudyState(folder, SETTINGS, space)
    for k, (lr, score) in enumerate([(1e-4, 0.6), (3e-4, 0.7)]):
        state.trials[f"t{k}"] = TrialRecord(
            f"t{k}", {"train.lr": lr}, "COMPLETED", score, 2, [{"epoch": 1, "mIoU": score - 0.1}, {"epoch": 2, "mIoU": score}], 0.0, 3.0
        )
    state.status = "interrupted"
    folder.mkdir(parents=True, exist_ok=True)
    state.write()
    return folder


def _automl(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from automl.cli import main

    monkeypatch.setattr(sys, "argv", ["automl", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def _one_line(code: int, err: str) -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err


def test_the_written_study_reads_back(tmp_path, monkeypatch, capsys):
    """Control: the untouched study prints its leaderboard, best trial first."""
    study = _write_study(tmp_path / "study")
    code, out, err = _automl(["status", str(study)], monkeypatch, capsys)
    assert code in (0, None), err
    assert out.index("t1") < out.index("t0")


@pytest.mark.parametrize(
    "content, expect",
    [
        ("", "is empty"),
        ("cut", "not valid JSON"),
        ("[1, 2]", "not a study file"),
        ("\xff\xfe", "not valid JSON"),
    ],
)
@pytest.mark.parametrize("command", ["status", "resume", "report"])
def test_an_unreadable_study_json_is_one_line(command, content, expect, tmp_path, monkeypatch, capsys):
    study = _write_study(tmp_path / "study")
    (study / "study.json").write_text(content)
    code, _, err = _automl([command, str(study)], monkeypatch, capsys)
    _one_line(code, err)
    assert expect in err


def test_a_study_json_cut_short_is_one_line(tmp_path, monkeypatch, capsys):
    study = _write_study(tmp_path / "study")
    text = (study / "study.json").read_text()
    (study / "study.json").write_text(text[: len(text) // 2])
    code, _, err = _automl(["status", str(study)], monkeypatch, capsys)
    _one_line(code, err)


@pytest.mark.parametrize(
    "edit, expect",
    [
        (lambda d: d.pop("settings"), "settings"),
        (lambda d: d["settings"].__setitem__("mode", "maximum"), "settings.mode"),
        (lambda d: d["records"][0].__setitem__("status", "DONE"), "records.status"),
        (lambda d: d["records"][0].__setitem__("best_metric", "high"), "records.best_metric"),
        (lambda d: d.__setitem__("best_so_far", {"params": {}}), "best_so_far.trial_id"),
        (lambda d: d.__setitem__("elapsed_seconds", "long"), "elapsed_seconds"),
    ],
    ids=["no-settings", "mode", "status", "metric", "best-without-id", "elapsed"],
)
def test_a_hand_edited_study_json_names_the_field(edit, expect, tmp_path, monkeypatch, capsys):
    study = _write_study(tmp_path / "study")
    doc = json.loads((study / "study.json").read_text())
    edit(doc)
    (study / "study.json").write_text(json.dumps(doc))
    for command in ("status", "report", "resume"):
        code, _, err = _automl([command, str(study)], monkeypatch, capsys)
        _one_line(code, err)
        assert expect in err, err


@pytest.mark.parametrize(
    "content",
    ["", "trial_id,status\n", "trial_id,status,best_mIoU\nt0,COMPLETED,high\nt1\nt2,FAILED,,extra,cells\n", "\x00\x00"],
    ids=["empty", "header-only", "edited-rows", "binary"],
)
def test_status_reads_any_leaderboard(content, tmp_path, monkeypatch, capsys):
    study = _write_study(tmp_path / "study")
    (study / "leaderboard.csv").write_text(content)
    code, out, err = _automl(["status", str(study)], monkeypatch, capsys)
    assert code in (0, None, 2), err
    assert "Traceback" not in err and err.count("\n") <= 1, err


@pytest.mark.parametrize("ref", [":", ".registry:REGISTRY", "automl.registry:", "no_such_module:X", "a b:c"])
def test_a_bad_model_reference_is_one_line(ref, tmp_path, monkeypatch, capsys):
    code, _, err = _automl(["run", "--model", ref, "-e", str(tmp_path / "spec.yaml")], monkeypatch, capsys)
    _one_line(code, err)
    assert "--model" in err


HOSTILE = [None, True, "", "x", 0, -1, 1.5, 2**70, math.nan, [], {}, [[]], {"a": 1}]


def _places(node, path=()):
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield path, key
        yield from _places(child, (*path, key))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict:
    return json.loads((_write_study(tmp_path_factory.mktemp("s") / "study") / "study.json").read_text())


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_mutated_study_json_reads_or_is_one_line(data, written, tmp_path, monkeypatch, capsys):
    doc = copy.deepcopy(written)
    path, leaf = data.draw(st.sampled_from(list(_places(doc))))
    parent = doc
    for part in path:
        parent = parent[part]
    if data.draw(st.booleans()):
        del parent[leaf]
    else:
        parent[leaf] = data.draw(st.sampled_from(HOSTILE))
    study = _write_study(tmp_path / f"study{len(list(tmp_path.iterdir()))}")
    (study / "study.json").write_text(json.dumps(doc))
    for command in ("status", "report"):
        code, _, err = _automl([command, str(study)], monkeypatch, capsys)
        assert code in (0, None, 2), err
        assert "Traceback" not in err and err.count("\n") <= 1, err
