"""The bad-input corpus (tests/bad_inputs/cases.yaml): every bad COCO file, spec, search space, checkpoint and
override ends the real command with exit code 2 and one line naming the problem, before any work starts.

Most cases run the CLI's `main()` in this process (the same code path as the console script, without ~3 s of
imports per case); the cases marked `process: true` run the installed console scripts.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli

CORPUS = Path(__file__).parent / "bad_inputs"
GOOD = CORPUS / "good"
CASES = yaml.safe_load((CORPUS / "cases.yaml").read_text())
INPUT_DIRS = ("coco", "specs", "spaces")
# Bad checkpoints are binary files, so the tests write them (into a temp folder) instead of keeping them in git.


def write_bad_checkpoints(folder: Path) -> Path:
    """Files named .pth that are not MAL checkpoints, each wrong in its own way."""
    import numpy as np
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "random_bytes.pth").write_bytes(np.random.default_rng(0).bytes(512))
    (folder / "text_file.pth").write_text("model weights go here\n")
    torch.save({"student.weight": torch.zeros(64, 32)}, folder / "whole.pth")
    whole = (folder / "whole.pth").read_bytes()
    (folder / "truncated.pth").write_bytes(whole[: len(whole) // 2])  # a copy cut short
    (folder / "whole.pth").unlink()
    torch.save(torch.zeros(4), folder / "tensor_not_dict.pth")
    torch.save({"backbone.weight": torch.zeros(2, 2)}, folder / "no_student_weights.pth")
    return folder


@pytest.fixture(scope="module")
def bad_checkpoints(tmp_path_factory) -> Path:
    return write_bad_checkpoints(tmp_path_factory.mktemp("bad_inputs") / "checkpoints")


def _input_path(rel: str, bad_checkpoints: Path) -> Path:
    """A corpus file: checkpoints from the written folder, everything else from tests/bad_inputs/."""
    return bad_checkpoints.parent / rel if rel.startswith("checkpoints/") else CORPUS / rel


def _case_id(case: dict) -> str:
    what = case.get("override") or ",".join(f"{k}={v}" for k, v in case["set"].items())
    return f"{case['cmd']}:{what}"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A real MAL weights file for the good spec, so evaluate/inference fail only on the input under test."""
    from mal.model import build_mal
    from mal.spec import load_spec
    from plumbing.torch_files import save_atomic

    spec = load_spec(GOOD / "spec.yaml")
    path = tmp_path_factory.mktemp("weights") / "model.pth"
    return save_atomic(build_mal(spec.model, spec.dataset.crop_size).state_dict(), path)


def _base(cmd: str, weights: Path, results: Path) -> list[str]:
    """The valid command every case changes one input of."""
    images, ann = GOOD / "images", GOOD / "annotations.json"
    val = [f"dataset.val_ann_path={ann}", f"dataset.val_img_dir={images}"]
    train = [f"dataset.train_ann_path={ann}", f"dataset.train_img_dir={images}", *val]
    overrides = {
        "mal train": train,
        "automl off": train,
        "automl run": [*train, f"automl.search_space={GOOD / 'space.yaml'}"],
        "mal evaluate": [*val, f"evaluate.checkpoint={weights}"],
        "mal inference": [f"inference.ann_path={ann}", f"inference.img_dir={images}", f"inference.checkpoint={weights}"],
    }[cmd]
    tool, command = cmd.split()
    model = ["--model", "mal"] if tool == "automl" else []
    return [tool, command, *model, "-e", str(GOOD / "spec.yaml"), *overrides, f"results_dir={results}"]


def _argv(case: dict, weights: Path, results: Path, bad_checkpoints: Path) -> list[str]:
    argv = _base(case["cmd"], weights, results)
    for key, rel in case.get("set", {}).items():
        if key == "-e":
            argv[argv.index("-e") + 1] = str(_input_path(rel, bad_checkpoints))
        else:
            argv.append(f"{key}={_input_path(rel, bad_checkpoints)}")
    if "override" in case:
        argv.append(case["override"])
    return argv


def _run_in_process(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """The CLI's own main() with this argv: exit code, stdout, stderr (an escaping exception fails the test)."""
    from automl.cli import main as automl_main
    from mal.cli import main as mal_main

    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        {"mal": mal_main, "automl": automl_main}[argv[0]]()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_bad_input_exits_2_with_one_line_before_any_work(case, weights, bad_checkpoints, tmp_path, monkeypatch, capsys):
    results = tmp_path / "results"
    argv = _argv(case, weights, results, bad_checkpoints)
    if case.get("process"):
        done = run_cli(*argv, cwd=tmp_path, timeout=120)
        code, out, err = done.returncode, done.stdout, done.stderr
    else:
        monkeypatch.chdir(tmp_path)
        code, out, err = _run_in_process(argv, monkeypatch, capsys)
    assert code == 2, f"exit {code}\nstdout: {out}\nstderr: {err}"
    assert err.startswith("error: ") and err.count("\n") == 1, f"not one line: {err!r}"
    assert case["expect"] in err, err
    assert "Traceback" not in out + err
    assert not results.exists(), f"work started: {sorted(results.rglob('*'))}"


def test_corpus_has_30_bad_inputs_and_every_file_is_a_case(bad_checkpoints):
    used = {rel for case in CASES for rel in case.get("set", {}).values()}
    files = {str(p.relative_to(CORPUS)) for d in INPUT_DIRS for p in (CORPUS / d).iterdir()}
    files |= {f"checkpoints/{p.name}" for p in bad_checkpoints.iterdir()}
    assert files - used == set(), "corpus files that no case runs"
    assert used - files <= {"images"}, "cases naming files that do not exist"
    coco_text = "".join((CORPUS / "coco" / p.name).read_text(errors="replace") for p in (CORPUS / "coco").iterdir())
    assert all(p.name in coco_text for p in (CORPUS / "images").iterdir()), "bad images no COCO file uses"
    assert len(files) + sum("override" in c for c in CASES) >= 30
    assert 3 <= sum(bool(c.get("process")) for c in CASES) <= 5


@pytest.mark.parametrize("action", ["train", "evaluate", "inference"])
def test_the_good_base_passes_validation(action, weights, tmp_path):
    """Control: without its one bad input, every case's command would get past validation."""
    from automl.registry import get_model
    from automl.space import load_space_file, resolve_space
    from mal.spec import check_paths, load_spec

    cmd = {"train": "mal train", "evaluate": "mal evaluate", "inference": "mal inference"}[action]
    spec = load_spec(GOOD / "spec.yaml", _base(cmd, weights, tmp_path)[4:])
    check_paths(spec, action)
    if action == "train":
        space = resolve_space(
            get_model("mal"), load_space_file(GOOD / "space.yaml"), spec, spec.automl.hyperparameters, spec.automl.range_overrides
        )
        assert space.names == ["train.lr"]


@pytest.mark.slow
def test_skipped_training_boxes_are_counted_and_reported(weights, tmp_path):
    """Boxes below dataset.min_obj_size are not trained on, and `mal train` prints how many it skipped."""
    argv = _base("mal train", weights, tmp_path / "results") + ["dataset.min_obj_size=1700"]
    done = run_cli(*argv, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    # the good set's boxes are 1296 and 1600 px^2 (below 1700), 1904 and 1920 px^2
    assert "training on 2 boxes; skipped 2" in done.stderr
    assert (tmp_path / "results" / "train" / "mal_model_latest.pth").is_file()


def test_rle_counts_parser_agrees_with_pycocotools():
    """The RLE check decodes COCO's compressed counts itself; it must read what pycocotools writes."""
    import numpy as np
    from pycocotools import mask as mask_utils

    from plumbing.coco import _rle_string_counts, _segmentation_problem

    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        truth = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        text = mask_utils.encode(np.asfortranarray(truth))["counts"].decode("ascii")
        counts = _rle_string_counts(text)
        assert sum(counts) == h * w
        decoded = mask_utils.decode(mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w))
        np.testing.assert_array_equal(decoded, truth)
        assert _segmentation_problem({"size": [h, w], "counts": text}, h, w) is None
        assert _segmentation_problem({"size": [h, w], "counts": text + "1"}, h, w) is not None
