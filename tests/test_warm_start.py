"""Warm starts: the spec's own values and the space file's popular ones, fitted to the study's ranges, are what
every algorithm tries first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from automl.algorithms import ALGORITHMS, StudySettings, build
from automl.registry import get_model
from automl.space import SearchSpace, load_space_file, resolve_space
from automl.space.sampling import nearest
from automl.space.schema import ParamSpec
from automl.study import same_space
from mal.spec import load_spec, with_values

MAL = get_model("mal")
SPEC, POPULAR = "your spec's values", "popular values"


def _resolve(tmp_path: Path, parameters: dict, overrides=(), popular=None, ranges=None) -> SearchSpace:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"model": "t", "parameters": parameters, "popular": popular or {}}, sort_keys=False))
    return resolve_space(MAL, load_space_file(path), load_spec(None, list(overrides)), list(parameters), ranges or {})


def _param(**fields) -> ParamSpec:
    return ParamSpec.model_validate({"name": "x", **fields})


def test_nearest_clamps_snaps_and_refuses_what_a_parameter_cannot_hold():
    assert nearest(_param(type="float", low=1e-5, high=1e-3, log=True), 1e-6) == 1e-5
    assert nearest(_param(type="float", low=0.0, high=1.0, step=0.25), 0.6) == 0.5
    assert nearest(_param(type="float", low=0.0, high=1.0, step=0.25), 7.0) == 1.0
    assert nearest(_param(type="int", low=2, high=10, step=4), 9) == 10 and nearest(_param(type="int", low=1, high=8), 3.4) == 3
    assert nearest(_param(type="categorical", choices=[256, 512]), 384) is None
    assert nearest(_param(type="categorical", choices=[1, 2]), True) is None  # True is not the choice 1
    assert nearest(_param(type="bool"), False) is False
    assert nearest(_param(type="float", low=0.0, high=1.0), "0.5") is None


def test_the_spec_and_popular_values_are_fitted_to_the_study_ranges_spec_first(tmp_path):
    parameters = {
        "train.lr": {"type": "float", "low": 1e-7, "high": 1e-3, "log": True},
        "train.loss_mil_weight": {"type": "float", "low": 0.5, "high": 8.0},
        "dataset.crop_size": {"type": "categorical", "choices": [256, 384]},
    }
    space = _resolve(tmp_path, parameters, ["train.lr=5e-4", "train.loss_mil_weight=2.0", "dataset.crop_size=512"],
                     popular={"train.lr": 1e-6, "train.loss_mil_weight": 4.0},
                     ranges={"train.lr": {"low": 1e-5, "high": 1e-4}})  # the study narrows the file's range
    assert space.spec_values == {"train.lr": 5e-4, "train.loss_mil_weight": 2.0, "dataset.crop_size": 512}
    first = space.first_points()
    assert list(first) == [SPEC, POPULAR]
    # lr moved onto the range's edge; a crop the choices do not offer is left for the searcher to draw
    assert first[SPEC] == {"train.lr": 1e-4, "train.loss_mil_weight": 2.0}
    assert first[POPULAR] == {"train.lr": 1e-5, "train.loss_mil_weight": 4.0}


def test_the_popular_point_is_tried_once_when_it_is_the_specs(tmp_path):
    parameters = {"train.loss_mil_weight": {"type": "float", "low": 0.5, "high": 8.0}}
    space = _resolve(tmp_path, parameters, ["train.loss_mil_weight=4.0"], popular={"train.loss_mil_weight": 4.0})
    assert space.first_points() == {SPEC: {"train.loss_mil_weight": 4.0}}


def test_fitting_follows_conditions_constraints_and_derivations(tmp_path):
    parameters = {
        "model.not_adjust_scale": {"type": "bool"},
        "model.mask_scale_ratio_pre": {"type": "float", "low": 0.5, "high": 1.5,
                                       "condition": {"param": "model.not_adjust_scale", "equals": True}},
        "train.crf_value_high_thres": {"type": "float", "low": 0.3, "high": 0.95},
        "train.crf_value_low_thres": {"type": "float", "low": 0.05, "high": 0.9, "constraint": "< train.crf_value_high_thres"},
    }
    space = _resolve(tmp_path, parameters, ["model.not_adjust_scale=false", "train.crf_value_high_thres=0.4"])
    point = space.fitted({**space.spec_values, "train.crf_value_low_thres": 0.8})
    assert "model.mask_scale_ratio_pre" not in point  # its condition is off for the spec's value
    assert point["train.crf_value_high_thres"] == 0.4 and point["train.crf_value_low_thres"] < 0.4
    with_values(load_spec(None), point)  # what the trial gets is a valid spec

    derived = _resolve(tmp_path, {
        "train.loss_crf_step": {"type": "int", "low": 1000, "high": 8000},
        "train.loss_mil_step": {"type": "int", "derive": "train.loss_crf_step // 4"},
    }, ["train.loss_crf_step=6000", "train.loss_mil_step=77"])
    assert derived.fitted(derived.spec_values) == {"train.loss_crf_step": 6000, "train.loss_mil_step": 1500}


def test_a_partial_point_is_completed_by_draws_that_respect_the_space(tmp_path):
    parameters = {
        "train.lr": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
        "dataset.crop_size": {"type": "categorical", "choices": [256, 384]},
    }
    space = _resolve(tmp_path, parameters)
    whole = space.complete({"train.lr": 3e-5}, np.random.default_rng(0))
    assert whole["train.lr"] == 3e-5 and whole["dataset.crop_size"] in (256, 384)
    out_of_range = space.complete({"train.lr": 1.0}, np.random.default_rng(0))
    assert 1e-5 <= out_of_range["train.lr"] <= 1e-4  # never handed on as it is


def _settings(**kw) -> StudySettings:
    return StudySettings(metric="mIoU", mode="max", max_trials=kw.pop("max_trials", 6), max_epochs=4, grace_period=1,
                         reduction_factor=2, seed=0, shape_fields=("model.", "dataset."), **kw)


@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "grid"])
def test_every_algorithm_suggests_the_first_points_before_anything_else(tmp_path, algorithm):
    parameters = {
        "train.lr": {"type": "float", "low": 1e-5, "high": 1e-4, "log": True},
        "train.loss_mil_weight": {"type": "float", "low": 0.5, "high": 8.0},
    }
    space = _resolve(tmp_path, parameters, ["train.lr=2e-5", "train.loss_mil_weight=1.5"],
                     popular={"train.lr": 5e-5, "train.loss_mil_weight": 4.0})
    first = list(space.first_points().values())
    searcher, _ = build(algorithm, space, _settings(first_points=tuple(first)))
    if algorithm == "pbt":  # Tune's plain generator holds PBT's starting points
        suggested = searcher._points_to_evaluate[:3]
    else:
        suggested = [searcher.suggest(f"t{i}") for i in range(3)]
    assert suggested[:2] == first
    assert suggested[2] not in first  # then the searcher's own draws
    cold, _ = build(algorithm, space, _settings())
    if algorithm != "pbt":
        assert cold.suggest("t0") not in first  # without a warm start nothing is queued


def test_a_grid_runs_its_warm_start_points_first(tmp_path):
    parameters = {"train.crf_kernel_size": {"type": "categorical", "choices": [3, 5, 7]}}
    space = _resolve(tmp_path, parameters, ["train.crf_kernel_size=7"])
    searcher, _ = build("grid", space, _settings(first_points=tuple(space.first_points().values())))
    assert [searcher.suggest(f"t{i}")["train.crf_kernel_size"] for i in range(3)] == [7, 3, 5]


def test_a_study_recorded_before_warm_starts_still_reads_and_resumes(tmp_path):
    space = _resolve(tmp_path, {"train.loss_mil_weight": {"type": "float", "low": 0.5, "high": 8.0}})
    old = space.to_dict()
    del old["spec_values"]
    old["warm_start"] = {"train.loss_mil_weight": 9.0}  # an older version kept an out-of-range popular value as is
    assert SearchSpace.from_dict(old).spec_values == {}
    assert same_space(space.to_dict(), old)
    changed = {**old, "base": {"train.lr": 1.0}}
    assert not same_space(space.to_dict(), changed)


# ------------------------------------------------------------------------------- automl.warm_start_from

PRIOR_SETTINGS = {"model": "mal", "algorithm": "asha", "metric": "mIoU", "mode": "max", "max_trials": 4, "max_epochs": 4,
                  "grace_period": 1, "reduction_factor": 2, "max_concurrent": 1, "cpus_per_trial": 1.0,
                  "gpus_per_trial": 0.0, "workers_per_trial": 1, "seed": 0, "max_failures": 1}


def _prior_folder(tmp_path: Path, space: SearchSpace, **settings) -> Path:
    from automl.state import StudyState, TrialRecord

    folder = tmp_path / "before"
    state = StudyState(folder, {**PRIOR_SETTINGS, **settings}, space)
    curves = {"full": (2e-5, [0.60, 0.64, 0.66, 0.70]), "rung": (5e-5, [0.65]), "best": (4e-5, [0.62, 0.70, 0.71, 0.72]),
              "outside": (9e-4, [0.50, 0.51, 0.52, 0.53])}
    for trial_id, (lr, values) in curves.items():
        history = [{"epoch": e, "mIoU": v} for e, v in enumerate(values, start=1)]
        status = "STOPPED" if len(values) < 4 else "COMPLETED"
        state.trials[trial_id] = TrialRecord(trial_id, {"train.lr": lr}, status, max(values), len(values), history)
    state.trials["broken"] = TrialRecord("broken", {"train.lr": 3e-5}, "FAILED", error="diverged")
    folder.mkdir(parents=True)
    state.write()
    return folder


def test_an_earlier_studys_trials_are_told_to_tpe_at_the_new_budget(tmp_path):
    from automl.prior_study import read_prior_study

    lr = {"train.lr": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True}}
    before = _prior_folder(tmp_path, _resolve(tmp_path, lr))
    space = _resolve(tmp_path, lr, ranges={"train.lr": {"low": 1e-5, "high": 1e-4}})  # narrower now
    prior = read_prior_study(before, "mal", "mIoU", "max", space, max_epochs=2)  # a shorter budget than before
    told = {t.trial_id: t for t in prior.trials}
    assert set(told) == {"full", "rung", "best"} and prior.skipped == {"outside": "outside the ranges", "broken": "failed"}
    assert told["full"].value == 0.64 and told["full"].intermediate == {1: 0.60, 2: 0.64}  # judged within 2 epochs
    assert told["rung"].value is None  # stopped below the new budget: pruned, never a finished result
    assert prior.best.trial_id == "best" and prior.best.value == 0.70
    assert prior.summary() == (f"warm start from {before}: 3 of 5 trials told to the searcher (2 at the full budget, 1 as "
                               "pruned); 1 outside the ranges; 1 failed; its best, best (0.7), runs first")

    searcher, _ = build("asha", space, _settings(prior_trials=tuple(prior.trials), first_points=(prior.best.params,)))
    told = {t.user_attrs["prior_trial"]: t for t in searcher._ot_study.trials if "prior_trial" in t.user_attrs}
    assert {k: t.state.name for k, t in told.items()} == {"full": "COMPLETE", "rung": "PRUNED", "best": "COMPLETE"}
    assert told["best"].value == 0.70 and told["rung"].intermediate_values == {1: 0.65}
    assert searcher.suggest("t0") == {"train.lr": 4e-5}  # the earlier best runs again first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metric": "box_score"}, "was judged by box_score (max), this study by mIoU (max)"),
        ({"model": "toy"}, "is a study of model 'toy', this one tunes 'mal'"),
    ],
)
def test_a_study_that_cannot_be_compared_is_refused_in_one_line(tmp_path, change, message):
    from automl.prior_study import read_prior_study
    from plumbing.errors import UserError

    lr = {"train.lr": {"type": "float", "low": 1e-6, "high": 1e-3, "log": True}}
    space = _resolve(tmp_path, lr)
    before = _prior_folder(tmp_path, space, **change)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_prior_study(before, "mal", "mIoU", "max", space, 4)
    other = _resolve(tmp_path, {**lr, "train.wd": {"type": "float", "low": 0.0, "high": 0.1}})
    with pytest.raises(UserError, match="search the same parameters"):
        read_prior_study(_prior_folder(tmp_path / "x", space), "mal", "mIoU", "max", other, 4)
    with pytest.raises(UserError, match="holds no study"):
        read_prior_study(tmp_path / "nowhere", "mal", "mIoU", "max", space, 4)
