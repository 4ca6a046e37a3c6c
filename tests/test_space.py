"""Search spaces: the shipped MAL file, one-line validation errors, Optuna/grid/random sampling, TAO import."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml

from automl.registry import get_model
from automl.space import SearchSpace, load_space_file, resolve_space
from mal.errors import UserError
from mal.spec import load_spec, with_values

MAL = get_model("mal")
MAL_YAML = MAL.search_space
TAO_SCHEMA = Path(__file__).parent / "data" / "tao_train.schema.json"
DEMO_OVERRIDES = ["model.arch=vit-micro/8", "dataset.crop_size=96"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _space(tmp_path: Path, parameters: dict, **top) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({"model": "t", "parameters": parameters, **top}, sort_keys=False))
    return path


def _resolve(
    tmp_path: Path, parameters: dict, hyperparameters=None, range_overrides=None, spec=None, **top
) -> SearchSpace:
    space_file = load_space_file(_space(tmp_path, parameters, **top))
    return resolve_space(
        MAL, space_file, spec or load_spec(None), hyperparameters or list(parameters), range_overrides or {}
    )


def _all_offered(space_file) -> list[str]:
    return [n for n in space_file.parameters if not space_file.is_disabled(n)]


# ---------------------------------------------------------------------------------------------- shipped file


def test_shipped_mal_space_defaults_resolve_with_the_paper_recipe_as_warm_start():
    space_file = load_space_file(MAL_YAML)
    space = resolve_space(MAL, space_file, load_spec(None), None, {})
    assert sorted(space.names) == sorted(space_file.default_parameters)
    assert {
        "train.lr",
        "train.loss_crf_weight",
        "train.loss_mil_weight",
        "train.warmup_epochs",
        "dataset.crop_size",
    } == set(space.names)
    assert space.warm_start == {name: space_file.popular[name] for name in space.names}
    assert with_values(load_spec(None), space.warm_start).train.lr == pytest.approx(1e-6)
    for never in (
        "train.num_epochs",
        "train.seed",
        "train.num_gpus",
        "train.gpu_ids",
        "dataset.train_ann_path",
        "results_dir",
    ):
        assert space_file.is_disabled(never)


@pytest.mark.parametrize("overrides", [[], DEMO_OVERRIDES], ids=["default-spec", "micro8-crop96"])
def test_every_offered_mal_parameter_resolves_and_samples_valid_specs(overrides):
    spec = load_spec(None, overrides)
    space_file = load_space_file(MAL_YAML)
    space = resolve_space(MAL, space_file, spec, _all_offered(space_file), {})
    names = space.names
    assert names.index("train.crf_value_high_thres") < names.index("train.crf_value_low_thres")
    assert names.index("model.not_adjust_scale") < names.index("model.mask_scale_ratio_pre")
    rng = np.random.default_rng(0)
    for _ in range(20):
        with_values(spec, space.random_sample(rng))  # raises if a sample made an invalid spec
    assert json.loads(json.dumps(space.to_dict()))["parameters"]["train.lr"]["log"] is True
    assert (
        len(space.describe()) == len(names)
        and "only when model.not_adjust_scale == True" in space.describe()[-1]
    )


# ---------------------------------------------------------------------------------------------- errors


def _error(tmp_path: Path, parameters: dict, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        _resolve(tmp_path, parameters, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


LR = {"type": "float", "low": 1.0e-6, "high": 1.0e-4, "log": True}


@pytest.mark.parametrize(
    ("parameters", "kwargs", "expected"),
    [
        ({"train.lrr": LR}, {}, "train.lrr: not a field of the spec (did you mean 'train.lr'?)"),
        (
            {"train.lr": LR},
            {"hyperparameters": ["train.lrr"]},
            "train.lrr: not a field of the spec (did you mean 'train.lr'?)",
        ),
        (
            {"train.lr": {"type": "float", "low": 0.0, "high": 1.0e-4}},
            {},
            "train.lr low=0.0 is rejected by the spec: train.lr: 0.0 is not allowed (input should be greater than 0)",
        ),
        (
            {"train.crf_kernel_size": {"type": "categorical", "choices": [3, 4]}},
            {},
            "train.crf_kernel_size choice=4 is rejected by the spec",
        ),
        (
            {"train.lr": {"type": "float", "low": 1.0e-6, "high": float("inf")}},
            {},
            "train.lr: high=inf is not a finite bound",
        ),
        ({"train.lr": {"type": "float", "high": 1.0e-4}}, {}, "train.lr: low=None is not a finite bound"),
        (
            {"train.warmup_epochs": {"type": "float", "low": 0.0, "high": 2.0}},
            {},
            "train.warmup_epochs: type float does not fit the spec field (int)",
        ),
        (
            {"train.wd": {"type": "categorical", "choices": [0.1, "big"]}},
            {},
            "train.wd: choices ['big'] are not float values",
        ),
        (
            {"train.lr": LR},
            {"range_overrides": {"train.lr": {"high": 1.0e-3}}},
            "train.lr: high=0.001 widens the file's range",
        ),
        (
            {"train.crf_kernel_size": {"type": "categorical", "choices": [3, 5]}},
            {"range_overrides": {"train.crf_kernel_size": {"choices": [3, 7]}}},
            "choices [7] are not in the file's [3, 5]",
        ),
        (
            {"train.lr": LR},
            {"range_overrides": {"train.lr": {"lo": 1.0e-5}}},
            "train.lr: ['lo'] not allowed; use keys low, high",
        ),
        (
            {"train.lr": LR, "train.wd": LR},
            {"hyperparameters": ["train.lr"], "range_overrides": {"train.wd": {"high": 1.0e-5}}},
            "train.wd is not a searched parameter",
        ),
        (
            {"train.lr": LR, "train.seed": {"type": "int", "low": 0, "high": 9}},
            {"disabled_parameters": ["train"], "default_parameters": ["train.lr"]},
            "train.seed: disabled in the search space",
        ),
        (
            {"dataset.crop_size": {"type": "categorical", "choices": [96, 100]}},
            {"spec": load_spec(None, DEMO_OVERRIDES)},
            "dataset.crop_size choice=100 is rejected by the spec: dataset.crop_size: 100 must be a multiple of the patch size 8",
        ),
        (
            {
                "train.crf_value_low_thres": {
                    "type": "float",
                    "low": 0.5,
                    "high": 0.8,
                    "constraint": "< train.crf_value_high_thres",
                }
            },
            {"spec": load_spec(None, ["train.crf_value_high_thres=0.4"])},
            "constraint '< train.crf_value_high_thres' cannot always hold (low=0.5 vs train.crf_value_high_thres's smallest value 0.4)",
        ),
        (
            {"train.lr": {**LR, "constraint": "< train.wdd"}},
            {},
            "train.lr: train.wdd is not a field of the spec (did you mean 'train.wd'?)",
        ),
        (
            {
                "model.mask_scale_ratio_pre": {
                    "type": "float",
                    "low": 0.5,
                    "high": 2.0,
                    "condition": {"param": "model.not_adjust_scale", "equals": True},
                }
            },
            {},
            "can never hold (model.not_adjust_scale is not searched and is False in the spec)",
        ),
    ],
    ids=[
        "unknown-param",
        "unknown-selection",
        "bound-outside-spec",
        "choice-outside-spec",
        "infinite-bound",
        "missing-bound",
        "type-mismatch",
        "choice-type",
        "override-widens",
        "override-choices-not-subset",
        "override-unknown-key",
        "override-not-searched",
        "disabled-subtree",
        "crop-not-multiple-of-patch",
        "infeasible-constraint",
        "constraint-target-typo",
        "condition-never-holds",
    ],
)
def test_resolve_errors_are_one_line_naming_parameter_value_and_rule(tmp_path, parameters, kwargs, expected):
    assert expected in _error(tmp_path, parameters, **kwargs)


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "train.lr: log needs low > 0, got low=0.0"),
        ({"type": "float", "low": float("nan"), "high": 1.0}, "train.lr: low=nan is not allowed"),
        ({"type": "float", "low": 1.0e-4, "high": 1.0e-5}, "train.lr: low=0.0001 must be below high=1e-05"),
        ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, "log and step are exclusive"),
        (
            {"type": "categorical", "choices": [1.0e-5, 1.0e-4], "weights": [1.0]},
            "weights [1.0] need one entry per choice (2 choices)",
        ),
        ({"type": "categorical", "choices": [1.0e-5, 1.0e-4], "weights": [1.0, 0.0]}, "must all be > 0"),
        ({"type": "float", "lo": 0.1, "high": 1.0}, "train.lr: lo: unknown key (did you mean 'low'?)"),
    ],
    ids=[
        "log-low-zero",
        "nan",
        "low-above-high",
        "log-and-step",
        "weights-length",
        "weights-zero",
        "unknown-key",
    ],
)
def test_malformed_file_fails_at_load_with_one_line(tmp_path, parameter, expected):
    with pytest.raises(UserError, match="search-space file") as info:
        load_space_file(_space(tmp_path, {"train.lr": parameter}))
    assert expected in str(info.value)


def test_override_narrows_range_and_keeps_matching_weights(tmp_path):
    parameters = {
        "train.lr": LR,
        "dataset.crop_size": {"type": "categorical", "choices": [128, 256, 512], "weights": [1.0, 2.0, 3.0]},
    }
    overrides = {"train.lr": {"low": 1.0e-5}, "dataset.crop_size": {"choices": [512, 128]}}
    space = _resolve(tmp_path, parameters, range_overrides=overrides)
    lr, crop = space.params
    assert (lr.low, lr.high, lr.log) == (1.0e-5, 1.0e-4, True)
    assert crop.choices == [512, 128] and crop.weights == [3.0, 1.0]


# ---------------------------------------------------------------------------------------------- sampling


def test_to_optuna_builds_matching_distributions():
    space_file = load_space_file(MAL_YAML)
    dists = resolve_space(MAL, space_file, load_spec(None), _all_offered(space_file), {}).to_optuna()
    fd, idist, cd = (
        optuna.distributions.FloatDistribution,
        optuna.distributions.IntDistribution,
        optuna.distributions.CategoricalDistribution,
    )
    assert dists["train.lr"] == fd(1.0e-7, 1.0e-3, log=True)
    assert dists["train.loss_crf_weight"] == fd(0.0, 2.0, log=False)
    assert dists["train.warmup_epochs"] == idist(0, 2)
    assert dists["train.crf_num_iter"] == idist(10, 100, step=10)
    assert dists["dataset.crop_size"] == cd([96, 128, 192, 256, 384, 512])
    assert dists["model.not_adjust_scale"] == cd([False, True])


CONDITIONAL = {
    "model.not_adjust_scale": {"type": "bool"},
    "model.mask_scale_ratio_pre": {
        "type": "float",
        "low": 0.5,
        "high": 2.0,
        "condition": {"param": "model.not_adjust_scale", "equals": True},
    },
    # listed before its target on purpose: resolve must sample the target first
    "train.crf_value_low_thres": {
        "type": "float",
        "low": 0.05,
        "high": 0.9,
        "constraint": "< train.crf_value_high_thres",
    },
    "train.crf_value_high_thres": {"type": "float", "low": 0.3, "high": 0.95},
}


def test_suggest_with_optuna_honours_condition_and_constraint(tmp_path):
    spec = load_spec(None)
    space = _resolve(tmp_path, CONDITIONAL)
    assert space.names.index("train.crf_value_high_thres") < space.names.index("train.crf_value_low_thres")
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=10)
    )

    def objective(trial: optuna.Trial) -> float:
        values = space.suggest(trial)
        with_values(spec, values)
        return values["train.crf_value_high_thres"] - values["train.crf_value_low_thres"]

    study.optimize(objective, n_trials=50)
    params = [t.params for t in study.trials]
    assert all(("model.mask_scale_ratio_pre" in p) == p["model.not_adjust_scale"] for p in params)
    assert {p["model.not_adjust_scale"] for p in params} == {False, True}
    assert all(p["train.crf_value_low_thres"] < p["train.crf_value_high_thres"] for p in params)
    assert any(
        p["train.crf_value_low_thres"] > 0.3 for p in params
    )  # the file range above the target's low is used


def test_random_sample_is_deterministic_per_seed_and_honours_weights_log_and_base_constraint(tmp_path):
    spec = load_spec(None, ["train.crf_value_high_thres=0.5"])
    parameters = {
        "train.lr": LR,
        "dataset.crop_size": {"type": "categorical", "choices": [256, 512], "weights": [9.0, 1.0]},
        "train.crf_value_low_thres": {
            "type": "float",
            "low": 0.05,
            "high": 0.9,
            "constraint": "< train.crf_value_high_thres",
        },
    }
    space = _resolve(tmp_path, parameters, spec=spec)
    draw = [space.random_sample(np.random.default_rng(7)) for _ in range(2)]
    assert draw[0] == draw[1] != space.random_sample(np.random.default_rng(8))
    samples = [space.random_sample(np.random.default_rng(seed)) for seed in range(400)]
    crops = [s["dataset.crop_size"] for s in samples]
    assert 0.8 < crops.count(256) / len(crops) < 0.97
    below_geo_mean = sum(s["train.lr"] < math.sqrt(1.0e-6 * 1.0e-4) for s in samples) / len(samples)
    assert 0.4 < below_geo_mean < 0.6  # log-uniform; a linear draw would put ~1% there
    assert all(
        0.05 <= s["train.crf_value_low_thres"] < 0.5 for s in samples
    )  # the spec's 0.5, target not searched


def test_grid_enumerates_conditional_constrained_space(tmp_path):
    parameters = {
        "train.crf_kernel_size": {"type": "categorical", "choices": [3, 5]},
        "train.warmup_epochs": {"type": "int", "low": 0, "high": 2},
        "model.not_adjust_scale": {"type": "bool"},
        "model.mask_scale_ratio_pre": {
            "type": "float",
            "low": 0.5,
            "high": 1.5,
            "step": 0.5,
            "condition": {"param": "model.not_adjust_scale", "equals": True},
        },
        "train.crf_value_high_thres": {"type": "float", "low": 0.3, "high": 0.5, "step": 0.1},
        "train.crf_value_low_thres": {
            "type": "float",
            "low": 0.1,
            "high": 0.5,
            "step": 0.1,
            "constraint": "< train.crf_value_high_thres",
        },
    }
    rows = _resolve(tmp_path, parameters).grid()
    # kernel 2 x warmup 3 x (adjust off: 1 + on: 3 ratios) x (high,low) pairs with low < high: 2 + 3 + 4 = 9
    assert len(rows) == 2 * 3 * 4 * 9
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows)
    assert all(r["train.crf_value_low_thres"] < r["train.crf_value_high_thres"] for r in rows)
    assert {r["model.mask_scale_ratio_pre"] for r in rows if "model.mask_scale_ratio_pre" in r} == {
        0.5,
        1.0,
        1.5,
    }
    assert all(("model.mask_scale_ratio_pre" in r) == r["model.not_adjust_scale"] for r in rows)


def test_grid_refuses_a_continuous_parameter(tmp_path):
    space = _resolve(tmp_path, {"train.warmup_epochs": {"type": "int", "low": 0, "high": 2}, "train.lr": LR})
    with pytest.raises(UserError, match=r"grid search: train.lr: a grid needs finite values"):
        space.grid()


# ---------------------------------------------------------------------------------------------- TAO import


def test_tao_schema_converts_and_resolves():
    space_file = load_space_file(TAO_SCHEMA)
    params = space_file.parameters
    assert space_file.model == "mal"
    assert space_file.default_parameters[:2] == ["train.lr", "train.loss_mil_weight"]
    assert (params["train.lr"].low, params["train.lr"].high) == (1.0e-7, 1.0e-4)
    kernel = params["train.crf_kernel_size"]
    assert (kernel.type, kernel.choices, kernel.weights) == ("categorical", [3, 5, 7], [0.6, 0.3, 0.1])
    assert params["train.crf_value_low_thres"].constraint == "< train.crf_value_high_thres"
    assert params["train.loss_mil_weight"].low > 0  # math_cond "> 0"
    assert (params["dataset.crop_size"].step, params["dataset.crop_size"].low) == (16, 256)
    assert (
        "train.mask_thres" not in params and "train.optim_type" not in params
    )  # list / free string: not searchable
    assert any(note.startswith("train.mask_thres: left out") for note in space_file.notes)
    assert space_file.popular == {"train.num_epochs": 10, "train.lr": 1.5e-6}
    # TAO decides per leaf: its own automl_enabled false or its exact name disables it, a section never does
    for name in ("train.seed", "train.warmup_epochs"):
        assert space_file.is_disabled(name), name
    for name in ("dataset.crop_size", "model.arch", "wandb.enable", "model.teacher_momentum"):
        assert not space_file.is_disabled(name), name

    space = resolve_space(MAL, space_file, load_spec(None), None, {})
    assert sorted(space.names) == sorted(space_file.default_parameters)
    assert space.warm_start["train.lr"] == 1.5e-6 and space.warm_start["train.crf_kernel_size"] == 3
    named = resolve_space(MAL, space_file, load_spec(None), ["dataset.crop_size"], {})
    assert named.names == ["dataset.crop_size"]  # under the disabled `dataset` section, searched when named
    with pytest.raises(UserError, match="train.warmup_epochs: disabled in the search space"):
        resolve_space(MAL, space_file, load_spec(None), ["train.warmup_epochs"], {})


def test_tao_infinite_maximum_is_searched_around_the_default(tmp_path):
    schema = json.loads(TAO_SCHEMA.read_text())
    schema["properties"]["train"]["properties"]["lr"]["maximum"] = math.inf
    path = tmp_path / "train.schema.json"
    path.write_text(json.dumps(schema))  # written as `Infinity`, as TAO's schemas are
    assert "Infinity" in path.read_text()
    lr = load_space_file(path).parameters["train.lr"]
    assert (lr.low, lr.high) == (1.0e-7, pytest.approx(1.0e-5))  # default 1e-6 x 10


