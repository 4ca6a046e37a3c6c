"""The spec contract: TAO defaults, strict one-line errors, overrides, templates and the JSON Schema."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from mal.errors import UserError
from mal.spec import ExperimentSpec, check_paths, json_schema, load_spec, template, with_values
from tests.conftest import run_cli


def _error(*overrides: str) -> str:
    with pytest.raises(UserError) as info:
        load_spec(None, list(overrides))
    return str(info.value)


def test_defaults_follow_the_seed_reference():
    spec = ExperimentSpec()
    assert spec.model.arch == "vit-mae-base/16"
    assert spec.dataset.crop_size == 512 and spec.dataset.min_obj_size == 2048
    t = spec.train
    # lr: TAO's current code and skill card say 1e-6 (the spec reference's 1.5e-6 is older)
    assert (t.lr, t.min_lr_rate, t.wd, t.warmup_epochs) == (1e-6, 0.2, 5e-4, 1)
    assert (t.crf_kernel_size, t.crf_num_iter, t.loss_mil_weight, t.loss_crf_weight) == (3, 100, 4, 0.5)
    assert t.mask_thres == [0.1, 0.1, 0.1]  # one threshold expands to the three size buckets
    assert spec.results_dir == "/results" and spec.strategy == "ddp"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.lrr=1e-5", "train.lrr: unknown key (did you mean 'train.lr'?)"),
        ("train.crop_size=64", "did you mean 'dataset.crop_size'?"),
        ("trian.lr=1", "did you mean 'train'?"),
        ("train.lr=-1", "train.lr: -1 is not allowed (input should be greater than 0)"),
        ("train.lr=abc", "train.lr: 'abc' is not allowed"),
        ("train.num_epochs=1.5", "train.num_epochs: 1.5 is not allowed"),
        ("train.crf_kernel_size=4", "train.crf_kernel_size: 4 must be odd and >= 3"),
        ("train.min_lr_rate=-0.1", "train.min_lr_rate: -0.1 is not allowed"),
        ("train.min_lr_rate=1.5", "train.min_lr_rate: 1.5 is not allowed"),
        ("train.batch_size=0", "train.batch_size: 0 is not allowed"),
        ("dataset.crop_size=100", "dataset.crop_size: 100 must be a multiple of the patch size 16"),
        ("model.arch=vit-foo", "model.arch: 'vit-foo' is not allowed; expected 'vit-mae-base/16'"),
        ("automl.algorithm=tpe", "automl.algorithm: 'tpe' is not allowed"),
        ("train.mask_thres=[0.1,0.2]", "train.mask_thres: [0.1, 0.2] must be 1 or 3 thresholds"),
        ("train.crf_value_low_thres=0.95", "train.crf_value_low_thres: 0.95 must be below crf_value_high_thres"),
        ("train.lr=.nan", "train.lr: '.nan' is not allowed (must be a finite number)"),
    ],
)
def test_bad_values_give_one_line_naming_key_value_and_allowed(override, expected):
    message = _error(override)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize("override", ["foo", "=1", "train..lr=1", "train.lr=[1,"])
def test_malformed_overrides(override):
    assert "malformed override" in _error(override)


def test_overrides_are_yaml_typed_and_win_over_the_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 1e-4, "num_epochs": 3}}))
    spec = load_spec(path, ["train.num_epochs=5", "train.optim_betas=[0.8, 0.95]", "model.vit_dpr=0.1"])
    assert spec.train.lr == 1e-4 and spec.train.num_epochs == 5
    assert spec.train.optim_betas == [0.8, 0.95] and spec.model.vit_dpr == 0.1


def test_gpu_settings_reconcile_to_the_larger():
    assert load_spec(None, ["train.num_gpus=1", "train.gpu_ids=[0,1]"]).train.num_gpus == 2
    assert load_spec(None, ["train.num_gpus=3", "train.gpu_ids=[0]"]).train.gpu_ids == [0, 1, 2]


def test_template_round_trips_for_every_action(tmp_path):
    for action in ("train", "evaluate", "inference"):
        text = template(action)
        path = tmp_path / f"{action}.yaml"
        path.write_text(text)
        assert load_spec(path) == ExperimentSpec()
        assert yaml.safe_load(text) == ExperimentSpec().to_dict()


def test_schema_is_valid_json_schema_and_accepts_the_defaults():
    schema = json_schema("train")
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(ExperimentSpec().to_dict(), schema)
    assert "dataset.train_ann_path" in schema["x_required_for_action"]


def test_missing_and_absent_paths_are_reported(tmp_path):
    paths = {k: tmp_path for k in ("train_img_dir", "val_ann_path", "val_img_dir")}
    spec = load_spec(None, [f"dataset.train_ann_path={tmp_path / 'nope.json'}", *(f"dataset.{k}={v}" for k, v in paths.items())])
    with pytest.raises(UserError, match=r"dataset.train_ann_path: '.*nope.json' does not exist"):
        check_paths(spec, "train")
    with pytest.raises(UserError, match="evaluate.checkpoint is required for `evaluate`"):
        check_paths(load_spec(None, [f"dataset.val_ann_path={tmp_path}", f"dataset.val_img_dir={tmp_path}"]), "evaluate")


def test_with_values_revalidates():
    spec = ExperimentSpec()
    assert with_values(spec, {"train.lr": 2e-5}).train.lr == 2e-5
    with pytest.raises(UserError, match="train.lr"):
        with_values(spec, {"train.lr": 0})


def test_cli_user_errors_exit_2_with_one_line(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("train:\n  lr: 1e-5\n")
    for args in (["train", "-e", str(spec), "train.lrr=1"], ["train", "-e", str(tmp_path / "missing.yaml")], ["train", "-e", str(spec)]):
        done = run_cli("mal", *args)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("train: [1, 2\n")
    done = run_cli("mal", "train", "-e", str(bad_yaml))
    assert done.returncode == 2 and "not valid YAML" in done.stderr


def test_cli_template_and_schema_print():
    done = run_cli("mal", "template", "train")
    assert done.returncode == 0 and yaml.safe_load(done.stdout) == ExperimentSpec().to_dict()
    done = run_cli("mal", "schema", "inference")
    assert done.returncode == 0 and json.loads(done.stdout)["x_tao_schema"]["action"] == "inference"
    assert run_cli("mal", "template", "export").returncode == 2
