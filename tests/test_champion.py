"""The champion across validation sets: a champion registered from another set is evaluated again on the
new study's set (with its own spec and registered weights) and the new best competes with that score. The toy
model (tests/toy_model.py) makes the scores known: its evaluation is the squared distance of its one weight
to the spec's `target`, and its evaluation set is that target."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from automl.champion import PREVIOUS_CHAMPION_DIR, rescore_champion
from automl.registry import of
from automl.tracking import promote_champion
from plumbing.safe_yaml import dump_yaml

TESTS = Path(__file__).parent


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))  # its entry points are import paths into toy_model
    import toy_model

    return of(toy_model.TOY, "toy_model:TOY")


def _best_dir(folder: Path, weight: float, target: float) -> Path:
    """What promotion leaves in best/: the weights-only file and the spec that scores it."""
    import torch

    folder.mkdir(parents=True)
    torch.save({"w": torch.tensor(weight)}, folder / "model.pth")
    spec = {"out": str(folder), "weights": str(folder / "model.pth"), "target": target, "step_size": 0.2}
    (folder / "spec.yaml").write_text(dump_yaml(spec))
    return folder


class _Study:
    """A tracking database, and the end of a toy study as `automl.study` concludes it: the champion
    rescored when its set differs, then the new best registered against it."""

    def __init__(self, toy, tmp_path: Path) -> None:
        self.toy, self.root = toy, tmp_path
        self.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
        self.client = MlflowClient(self.uri)
        self.experiment = self.client.create_experiment("champions")
        self.evaluated: list = []

    def evaluate(self, spec):
        self.evaluated.append(spec)
        return self.toy.entry("evaluate")(spec)[0]

    def conclude(self, name: str, weight: float, target: float, evaluate=None):
        study_dir = self.root / name
        best = _best_dir(study_dir / "best", weight, target)
        spec = self.toy.load_spec(None, [f"target={target}", f"out={study_dir}"])
        eval_set = self.toy.eval_set(spec)
        rescored = rescore_champion(self.toy, spec, study_dir, self.uri, "distance", eval_set, evaluate or self.evaluate)
        run = self.client.create_run(self.experiment).info.run_id
        distance = (weight - target) ** 2
        return rescored, promote_champion(self.uri, "toy-regressor", run, best, {"distance": distance}, "distance", "min", eval_set, rescored)

    def champion(self) -> str:
        return str(self.client.get_model_version_by_alias("toy-regressor", "champion").version)


def test_a_champion_from_another_set_is_evaluated_again_and_compared_there(toy, tmp_path):
    study = _Study(toy, tmp_path)
    rescored, (version, moved, _) = study.conclude("first", weight=2.0, target=2.0)
    assert rescored is None and moved and str(version) == "1"  # the first champion: nothing to compare with

    # target 3: the champion (w=2) is 1.0 away there, the new best (w=2.9) 0.01: it moves, judged on this set
    rescored, (version, moved, message) = study.conclude("second", weight=2.9, target=3.0)
    assert str(rescored.version) == "1" and rescored.metrics["distance"] == pytest.approx(1.0)
    assert moved and study.champion() == str(version) == "2", message
    assert "beats 1.0000 (version 1 evaluated again on this validation set)" in message
    champion_spec = study.evaluated[-1]  # its own spec, this study's target, its registered weights
    assert champion_spec.target == 3.0 and champion_spec.step_size == 0.2
    assert Path(champion_spec.weights).is_relative_to(tmp_path / "second" / PREVIOUS_CHAMPION_DIR)
    assert Path(champion_spec.out) == tmp_path / "second" / PREVIOUS_CHAMPION_DIR

    # target 5: the champion (w=2.9) is 4.41 away, the new best (w=1) 16: the champion stays, for its score here
    rescored, (version, moved, message) = study.conclude("third", weight=1.0, target=5.0)
    assert rescored.metrics["distance"] == pytest.approx(4.41)
    assert not moved and study.champion() == "2"
    assert "not better than 4.4100 (version 2 evaluated again on this validation set)" in message

    # the same set as the champion's: its registered score is used, nothing is evaluated again
    evaluations = len(study.evaluated)
    rescored, (_, moved, message) = study.conclude("fourth", weight=3.2, target=3.0)
    assert rescored is None and len(study.evaluated) == evaluations
    assert not moved and "not better than 0.0100" in message  # v2's score on target 3, as registered


def test_a_champion_that_cannot_be_evaluated_again_stays_with_the_reason(toy, tmp_path):
    import toy_model

    def refuse(spec):
        raise toy_model.ToyError("weights do not fit this spec")

    study = _Study(toy, tmp_path)
    study.conclude("first", weight=2.0, target=2.0)
    rescored, (_, moved, message) = study.conclude("second", weight=3.0, target=3.0, evaluate=refuse)
    assert rescored.metrics is None and rescored.problem == "weights do not fit this spec"
    assert not moved and study.champion() == "1"
    assert message.endswith("not comparable; evaluating the champion on this set failed: weights do not fit this spec")
