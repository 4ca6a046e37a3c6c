"""automl knows models only through the registry protocol: a model that is not MAL (tests/toy_model.py) runs a
whole study, its own user errors end in one line, the protocol is checked when a model is loaded, and
neither package reaches into the other's code."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from mlflow import MlflowClient

from automl.registry import FIELDS, get_model, of
from plumbing.errors import UserError
from tests.conftest import ROOT, run_cli

TESTS = Path(__file__).parent
TOY = ["--model", "toy_model:TOY"]
ON_PATH = {"PYTHONPATH": str(TESTS)}


def _sources(package: str) -> dict[Path, str]:
    return {path: path.read_text() for path in (ROOT / package).rglob("*.py")}


def test_automl_names_no_model_field_file_metric_or_module():
    forbidden = re.compile(
        r"\bmal\.|mal_model_|\bmask_AP|\bmIoU|[\"']mal[\"']|^\s*(from|import) mal\b|mask2former", re.M
    )
    found = [f"{path.relative_to(ROOT)}: {m.group(0)!r}" for path, text in _sources("automl").items() for m in forbidden.finditer(text)]
    assert found == []


@pytest.mark.parametrize(
    ("package", "other"),
    [("mal", "automl"), ("mask2former", "automl"), ("plumbing", "automl"), ("plumbing", "mal"), ("plumbing", "mask2former"),
     ("mal", "mask2former"), ("mask2former", "mal")],
)  # fmt: skip
def test_a_package_never_imports_the_one_above_it(package, other):
    imports = re.compile(rf"^\s*(from|import) {other}\b", re.M)
    assert [str(p.relative_to(ROOT)) for p, text in _sources(package).items() if imports.search(text)] == []


def test_every_file_says_its_one_job_in_its_first_line():
    for package in ("mal", "mask2former", "automl", "plumbing"):
        for path, text in _sources(package).items():
            assert text.startswith('"""') and len(text.splitlines()[0]) > 3 + 20, f"{path}: no one-line docstring first"


def test_automl_help_imports_no_heavy_library():
    """`automl --help` stays instant because the CLI defers Ray, Optuna, MLflow and torch to the commands
    (bench/startup.py measures the seconds)."""
    probe = (
        "import sys\nfrom automl.cli import main\nsys.argv = ['automl', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print([m for m in ('torch', 'ray', 'mlflow', 'optuna', 'lightning', 'transformers', 'mal', 'mask2former') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0 and "run" in done.stdout, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_study_checks_a_fresh_trainings_inputs_without_torch(tiny_data, tmp_path):
    """The driver reads the spec and checks every input before Ray starts; with no checkpoint to read, that
    imports neither torch nor Lightning (seconds before the first trial on a small machine)."""
    d = tiny_data
    overrides = [
        f"dataset.train_ann_path={d / 'train' / 'annotations.json'}", f"dataset.train_img_dir={d / 'train' / 'images'}",
        f"dataset.val_ann_path={d / 'val' / 'annotations.json'}", f"dataset.val_img_dir={d / 'val' / 'images'}",
        "dataset.min_obj_size=16", f"results_dir={tmp_path / 'study'}",
    ]
    probe = (
        "import sys\nfrom automl.registry import get_model\nmodel = get_model('mal')\n"
        f"spec = model.load_spec(None, {overrides!r})\nmodel.check_inputs(spec)\n"
        "print([m for m in ('torch', 'lightning', 'torchvision', 'timm') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_model_lacking_protocol_fields_is_refused_by_name():
    with pytest.raises(UserError, match=r"--model x:Y: SimpleNamespace lacks .*registered_name.*automl.registry.TunableModel"):
        of(SimpleNamespace(name="half"), "x:Y")
    complete = SimpleNamespace(**{name: getattr(get_model("mal"), name) for name in FIELDS})
    complete.spec_fields = {"results_dir": "results_dir"}
    with pytest.raises(UserError, match="spec_fields lacks the roles epochs, validation_interval"):
        of(complete, "x:Y")


def test_unknown_model_names_are_one_line_with_a_suggestion():
    with pytest.raises(UserError, match=r"unknown model 'mall' \(did you mean 'mal'\?\); registered: mal, mask2former"):
        get_model("mall")
    with pytest.raises(UserError, match=r"--model: choose one of the registered models \(mal, mask2former\)"):
        get_model(None)  # two are registered: `automl run` without --model asks the spec (model_for_spec)


def _toy_spec(tmp_path: Path) -> Path:
    path = tmp_path / "toy.yaml"
    path.write_text(f"out: {tmp_path / 'study'}\nautoml:\n  algorithm: random\n  max_trials: 3\n  max_epochs: 3\n")
    return path


def test_a_models_own_user_error_is_one_line_and_exit_2(tmp_path):
    done = run_cli("automl", "run", *TOY, "-e", str(_toy_spec(tmp_path)), "bogus=1", env=ON_PATH, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: toy spec: bogus: Extra inputs are not permitted")


@pytest.mark.slow
def test_a_model_that_is_not_mal_runs_a_study_end_to_end(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = run_cli("automl", "run", *TOY, "-e", str(_toy_spec(tmp_path)), "--tracking-uri", uri, "automl.max_concurrent=2",
                   env=ON_PATH, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    study = tmp_path / "study"
    doc = json.loads((study / "study.json").read_text())
    assert doc["status"] == "completed" and (doc["settings"]["metric"], doc["settings"]["mode"]) == ("distance", "min")
    rows = list(csv.DictReader((study / "leaderboard.csv").open()))
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" and r["epochs"] == "3" for r in rows)
    lowest = min(rows, key=lambda r: float(r["best_distance"]))
    assert doc["best"]["trial_id"] == lowest["trial_id"]  # minimised, as the model says
    assert lowest["step_size"] == max((r["step_size"] for r in rows), key=float)  # the known best value
    for record in doc["records"]:
        assert [h["epoch"] for h in record["history"]] == [1, 2, 3] and all("distance" in h for h in record["history"])
        assert (study / "trials" / record["trial_id"] / "fit" / "toy-best.ckpt").is_file()
    final = json.loads((study / "best" / "metrics.json").read_text())
    assert final["distance"] == pytest.approx(float(lowest["best_distance"]), abs=1e-6)
    assert (study / "best" / "model.pth").is_file() and "final evaluation: distance" in done.stdout
    # the spec's step size ran first (warm start); the gain over it is minimised like the metric, beside the baseline
    gain = doc["gain"]
    spec_trial = next(r for r in doc["records"] if r["params"]["step_size"] == pytest.approx(0.1))
    assert gain["default_trial"] == spec_trial["trial_id"] and gain["budget"] == 3
    assert gain["default"] == pytest.approx(min(h["distance"] for h in spec_trial["history"]))
    assert gain["best"] == pytest.approx(float(lowest["best_distance"]), abs=1e-6) and gain["gain"] > 0
    assert gain["untrained"] == pytest.approx(9.0)
    assert "distance over your spec's values" in " ".join(done.stdout.split()[-30:])
    champion = MlflowClient(uri).get_model_version_by_alias("toy-regressor", "champion")
    assert champion.tags["distance"] == str(final["distance"]) and "toy-regressor@champion is version 1" in done.stdout

    # A study on another target (the toy's validation set): the champion is evaluated there again, on a worker,
    # with its own spec and registered weights, and the new best is judged against that score.
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(f"out: {tmp_path / 'study2'}\ntarget: 2.0\nautoml:\n  algorithm: random\n  max_trials: 2\n  max_epochs: 1\n"
                         f"  warm_start_from: {study}\n")
    again = run_cli("automl", "run", *TOY, "-e", str(elsewhere), "--tracking-uri", uri, env=ON_PATH, cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    # the first study's best values run right after the spec's own (random search learns nothing more from them)
    assert f"random learns nothing from earlier trials; its best, {lowest['trial_id']}, runs first" in " ".join(again.stdout.split())
    second = json.loads((tmp_path / "study2" / "study.json").read_text())
    assert second["settings"]["warm_start_from"]["told"] == [r["trial_id"] for r in doc["records"]]
    assert sorted(r["params"]["step_size"] for r in second["records"]) == pytest.approx(sorted([0.1, float(lowest["step_size"])]))
    import torch

    weight = float(torch.load(study / "best" / "model.pth", weights_only=True)["w"])
    there = json.loads((tmp_path / "study2" / "previous_champion" / "score.json").read_text())
    assert there["distance"] == pytest.approx((weight - 2.0) ** 2)
    said = json.loads((tmp_path / "study2" / "study.json").read_text())["best"]["champion"]
    assert "(version 1 evaluated again on this validation set)" in said and "not comparable" not in said

    report = run_cli("automl", "report", str(study))  # from study.json alone: the toy writes no training log
    assert report.returncode == 0, report.stderr
    assert {Path(line).stem for line in report.stdout.split()} >= {"optimization_history", "learning_curves"}
