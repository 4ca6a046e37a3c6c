"""Outputs are checked before any work, and checkpoints before they are read: every case ends the real
command in one line and exit code 2, and nothing is written (or overwritten)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

GOOD = Path(__file__).parent / "bad_inputs" / "good"
ANN, IMAGES = GOOD / "annotations.json", GOOD / "images"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from mal.model import build_mal
    from mal.spec import load_spec
    from plumbing.torch_files import save_atomic

    spec = load_spec(GOOD / "spec.yaml")
    return save_atomic(build_mal(spec.model, spec.dataset.crop_size).state_dict(), tmp_path_factory.mktemp("w") / "model.pth")


def _mal(argv: list[str], monkeypatch, capsys) -> tuple[int, str]:
    from mal.cli import main

    monkeypatch.setattr(sys, "argv", ["mal", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, capsys.readouterr().err


def _command(action: str, weights: Path, results: Path) -> list[str]:
    data = {
        "train": [f"dataset.train_ann_path={ANN}", f"dataset.train_img_dir={IMAGES}"],
        "evaluate": [f"evaluate.checkpoint={weights}"],
        "inference": [f"inference.ann_path={ANN}", f"inference.img_dir={IMAGES}", f"inference.checkpoint={weights}"],
    }[action]
    return [action, "-e", str(GOOD / "spec.yaml"), f"dataset.val_ann_path={ANN}", f"dataset.val_img_dir={IMAGES}", *data, f"results_dir={results}"]


def _refused(argv, expect, monkeypatch, capsys) -> None:
    code, err = _mal(argv, monkeypatch, capsys)
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert expect in err, err


@pytest.mark.parametrize("action", ["train", "evaluate", "inference"])
def test_results_dir_that_is_a_file_or_under_one(action, weights, tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    _refused(_command(action, weights, blocker), "is a file, not a folder", monkeypatch, capsys)
    _refused(_command(action, weights, blocker / "below"), "is a file, not a folder", monkeypatch, capsys)
    assert blocker.read_text() == "not a folder"


def test_results_dir_where_nothing_can_be_written(weights, monkeypatch, capsys):
    # /proc refuses new files even to root, for whom a chmod'ed folder would still be writable
    _refused(_command("evaluate", weights, Path("/proc/mal-results")), "cannot write in '/proc'", monkeypatch, capsys)


def test_evaluate_results_dir_under_a_file(weights, tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("x")
    argv = [*_command("evaluate", weights, tmp_path / "r"), f"evaluate.results_dir={tmp_path / 'f' / 'eval'}"]
    _refused(argv, "evaluate.results_dir:", monkeypatch, capsys)


def test_label_dump_path_that_is_a_folder_or_the_input(weights, tmp_path, monkeypatch, capsys):
    before = ANN.read_bytes()
    (tmp_path / "r" / "inference" / "out.json").mkdir(parents=True)
    base = _command("inference", weights, tmp_path / "r")
    _refused([*base, "inference.label_dump_path=out.json"], "is a folder; the output is a file", monkeypatch, capsys)
    _refused([*base, f"inference.label_dump_path={ANN}"], "is also an input", monkeypatch, capsys)
    relative_twin = os.path.relpath(ANN, tmp_path / "r" / "inference")
    _refused([*base, f"inference.label_dump_path={relative_twin}"], "is also an input", monkeypatch, capsys)
    assert ANN.read_bytes() == before


def test_demo_data_refuses_a_folder_holding_a_dataset(tmp_path, monkeypatch, capsys):
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "annotations.json").write_text("{}")
    code, err = _mal(["demo-data", str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "already holds a dataset" in err and err.count("\n") == 1, err
    assert (tmp_path / "val" / "annotations.json").read_text() == "{}"
    assert not (tmp_path / "train").exists()


def test_a_fifo_as_checkpoint_is_refused_without_blocking(weights, tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    argv = [*_command("evaluate", weights, tmp_path / "r"), f"evaluate.checkpoint={fifo}"]
    _refused(argv, "is not a regular file", monkeypatch, capsys)


def test_a_fifo_as_annotations_is_refused_without_blocking(weights, tmp_path, monkeypatch, capsys):
    fifo = tmp_path / "annotations.json"
    os.mkfifo(fifo)
    argv = [*_command("evaluate", weights, tmp_path / "r"), f"dataset.val_ann_path={fifo}"]
    _refused(argv, "not a regular file", monkeypatch, capsys)


def test_non_finite_weights_are_refused(weights, tmp_path, monkeypatch, capsys):
    import torch

    state = torch.load(weights, weights_only=True)
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first] = torch.full_like(state[first], float("nan"))
    torch.save(state, tmp_path / "nan.pth")
    argv = [*_command("inference", weights, tmp_path / "r"), f"inference.checkpoint={tmp_path / 'nan.pth'}"]
    _refused(argv, f"{first} holds NaN or inf", monkeypatch, capsys)
    assert not (tmp_path / "r").exists()


def test_a_latest_checkpoint_of_other_head_sizes_is_refused_before_resuming(weights, tmp_path, monkeypatch, capsys):
    """A Lightning-shaped training checkpoint whose heads are 8 channels wide, where the spec builds 16."""
    import torch

    from mal.model import build_mal
    from mal.spec import load_spec

    other = load_spec(GOOD / "spec.yaml", ["model.mask_head_hidden_channel=8", "model.mask_head_out_channel=8"])
    net = build_mal(other.model, other.dataset.crop_size)
    train_dir = tmp_path / "r" / "train"
    train_dir.mkdir(parents=True)
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "optimizer_states": [{}], "epoch": 0}, train_dir / "mal_model_latest.pth")
    _refused(_command("train", weights, tmp_path / "r"), "does not fit the spec's model", monkeypatch, capsys)


def test_output_json_is_strict_json(tmp_path):
    """NaN has no JSON spelling: what the commands write says null instead, and reads back with json.loads."""
    from mal.runner.evaluate import write_json

    path = write_json({"mIoU": float("nan"), "list": [1.0, float("inf")], "ok": 0.5}, tmp_path / "m.json")
    text = Path(path).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"mIoU": None, "list": [1.0, None], "ok": 0.5}
