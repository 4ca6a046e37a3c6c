"""The gain over the user's own values: the spec's values' trial against the best at the same budget, the
baselines beside them, the console's last line; and MAL's baseline, the filled box."""

from __future__ import annotations

import pytest

from automl.gain import gain_line, spec_trial, study_gain
from automl.state import TrialRecord
from mal.data import box_fill_miou
from mal.runner.evaluate import box_fill
from mal.spec import load_spec
from plumbing.coco import load_coco

SPEC_POINT = {"train.lr": 2e-5}


def _trial(trial_id: str, lr: float, values: list[float], status: str = "COMPLETED") -> TrialRecord:
    history = [{"epoch": e, "mIoU": v} for e, v in enumerate(values, start=1)]
    return TrialRecord(trial_id, {"train.lr": lr}, status, best_metric=max(values, default=None), epochs=len(values), history=history)


def test_the_gain_compares_the_specs_values_with_the_best_at_the_budget_they_reached():
    records = [
        _trial("spec", 2e-5, [0.60, 0.62], status="STOPPED"),  # stopped at the second rung
        _trial("late", 5e-5, [0.50, 0.58, 0.75, 0.80]),  # better only after the spec's budget
        _trial("early", 1e-5, [0.61, 0.66, 0.67, 0.68]),
        _trial("low", 3e-5, [0.90], status="STOPPED"),  # never reached 2 epochs: not comparable
    ]
    gain = study_gain(records, "mIoU", "max", {"train.lr": 2e-5}, SPEC_POINT, {"box_fill": {"mIoU": 0.586, "box_score": 0.5}})
    assert gain["default_trial"] == "spec" and gain["budget"] == 2
    assert gain["default"] == 0.62 and gain["best"] == 0.66 and gain["gain"] == pytest.approx(0.04)
    assert gain["box_fill"] == 0.586 and "narrowed" not in gain
    assert gain_line(gain) == "+0.040 mIoU over your spec's values: 0.620 → 0.660 within 2 epochs (spec); box_fill 0.586"


def test_a_minimised_metric_gains_when_it_falls():
    records = [
        TrialRecord("a", {"x": 0.1}, "COMPLETED", history=[{"epoch": 1, "distance": 4.0}, {"epoch": 2, "distance": 3.0}]),
        TrialRecord("b", {"x": 0.4}, "COMPLETED", history=[{"epoch": 1, "distance": 1.0}, {"epoch": 2, "distance": 0.5}]),
    ]
    gain = study_gain(records, "distance", "min", {"x": 0.1}, {"x": 0.1}, {})
    assert (gain["default"], gain["best"], gain["gain"]) == (3.0, 0.5, 2.5)


def test_values_moved_into_the_ranges_are_said():
    records = [_trial("spec", 1e-4, [0.6])]
    gain = study_gain(records, "mIoU", "max", {"train.lr": 5e-4}, {"train.lr": 1e-4}, {})
    assert gain["narrowed"] == {"train.lr": [5e-4, 1e-4]}
    assert "(moved into the study's ranges)" in gain_line(gain) and gain["gain"] == 0.0


@pytest.mark.parametrize(
    ("records", "note"),
    [
        ([_trial("other", 9e-5, [0.7])], "no trial ran the spec's values"),
        ([TrialRecord("spec", {"train.lr": 2e-5}, "FAILED", error="diverged: loss is nan\ntraceback")],
         "the trial of the spec's values (spec) failed: diverged: loss is nan"),
    ],
)
def test_a_gain_that_cannot_be_measured_says_why(records, note):
    gain = study_gain(records, "mIoU", "max", {"train.lr": 2e-5}, SPEC_POINT, {"box_fill": {"mIoU": float("nan")}})
    assert gain["default"] is None and gain["gain"] is None and gain["note"] == note
    assert gain["box_fill"] is None  # a NaN never reaches study.json
    assert gain_line(gain) == f"gain over your spec's values: not measured ({note})"


def test_the_spec_trial_matches_floats_as_tune_hands_them_back():
    records = [_trial("a", 0.1 + 0.2, [0.5])]
    assert spec_trial(records, {"train.lr": 0.3}).trial_id == "a"
    assert spec_trial(records, {}) is None


def test_the_filled_box_through_the_validation_path_is_the_box_fill_floor(demo_data):
    val = demo_data / "val"
    spec = load_spec(None, ["model.arch=vit-micro/8", "dataset.crop_size=96", f"dataset.val_ann_path={val / 'annotations.json'}",
                            f"dataset.val_img_dir={val / 'images'}"])
    metrics = box_fill(spec)
    floor = box_fill_miou(load_coco(str(val / "annotations.json"), str(val / "images")))
    assert metrics["mIoU"] == pytest.approx(floor, abs=0.002)  # only the crop's resampling of the box edge differs
    assert metrics["box_projection"] == pytest.approx(1.0) and 0 < metrics["box_score"] < 1
    assert metrics["num_boxes"] == 76


def test_status_shows_a_completed_studys_gain_and_survives_an_edited_one(tmp_path, monkeypatch, capsys):
    import json
    import sys

    from automl.cli import main
    from automl.space import SearchSpace
    from automl.state import StudyState

    settings = {"model": "mal", "algorithm": "asha", "metric": "mIoU", "mode": "max", "max_trials": 1, "max_epochs": 2,
                "grace_period": 1, "reduction_factor": 2, "max_concurrent": 1, "cpus_per_trial": 1.0,
                "gpus_per_trial": 0.0, "workers_per_trial": 1, "seed": 0, "max_failures": 1}
    state = StudyState(tmp_path, settings, SearchSpace("mal", (), {}, {}))
    state.trials["spec"] = _trial("spec", 2e-5, [0.6, 0.7])
    state.gain = study_gain(list(state.trials.values()), "mIoU", "max", {}, SPEC_POINT, {"box_fill": {"mIoU": 0.58}})
    state.status = "completed"
    state.write()

    def status() -> str:
        monkeypatch.setattr(sys, "argv", ["automl", "status", str(tmp_path)])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code in (0, None)
        return " ".join(capsys.readouterr().out.split())

    assert "+0.000 mIoU over your spec's values: 0.700 → 0.700 within 2 epochs (spec); box_fill 0.580" in status()
    doc = json.loads((tmp_path / "study.json").read_text())
    doc["gain"]["default"] = "high"
    (tmp_path / "study.json").write_text(json.dumps(doc))
    assert "gain over your spec's values: unreadable in study.json" in status()
