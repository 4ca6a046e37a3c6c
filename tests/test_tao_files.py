"""TAO's own files as written (../shared/reference/tao-files/: the skill bank's MAL templates and schemas, and
Mask2Former's train schema) and TAO's conventions: `???`, every problem at once, TAO's ranges and start-up
assertions, TAO's AutoML schema semantics, `automl space`, `mal schema --format tao`, `auto_label generate`."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest
import yaml

from automl.registry import get_model
from automl.space import load_space_file, resolve_space
from mal.spec import load_spec
from mal.spec.autolabel import autolabel_spec
from mal.spec.tao_schema import tao_schema
from plumbing.errors import UserError
from tests.conftest import ROOT, run_cli

TAO = ROOT.parent / "shared" / "reference" / "tao-files"
TEMPLATE = TAO / "mal_spec_template_train.yaml"
SCHEMAS = sorted(TAO.glob("*train.schema.json"))
MAL = get_model("mal")
GOOD = Path(__file__).parent / "bad_inputs" / "good"
pytestmark = pytest.mark.skipif(not TAO.is_dir(), reason="the TAO reference files are not here")


def _problems(path=None, *overrides: str) -> list[str]:
    with pytest.raises(UserError) as info:
        load_spec(path, list(overrides))
    return [str(info.value), *info.value.details]


@pytest.fixture
def cli(monkeypatch, capsys):
    """A console script's main() in this process (no fresh interpreter per call): (exit code, stdout, stderr)."""

    def run(tool: str, *args: str, cwd: Path | None = None):
        from automl.cli import main as automl_main
        from mal.cli import main as mal_main

        if cwd is not None:
            monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [tool, *args])
        with pytest.raises(SystemExit) as exited:
            {"mal": mal_main, "automl": automl_main}[tool]()
        out, err = capsys.readouterr()
        return exited.value.code or 0, out, err

    return run


def _write(tmp_path: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------------ specs


def test_the_skill_bank_templates_load_with_one_warning_line(caplog):
    with caplog.at_level(logging.WARNING, logger="mal"):
        spec = load_spec(TEMPLATE)
    assert spec.train.cudnn.deterministic is True and spec.train.lr == 1e-6 and spec.train.num_wave == 1.0
    warnings = [r.getMessage() for r in caplog.records if "not used here" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("accepted, not used here: wandb")
    for action in ("evaluate", "inference"):  # their checkpoint is `???`: given on the command line
        load_spec(TAO / f"mal_spec_template_{action}.yaml", [f"{action}.checkpoint=/x.pth"])


def test_unused_tao_fields_are_listed_once_never_refused(caplog):
    overrides = ["model_name=mal", "encryption_key=k", "train.min_lr=1e-7", "evaluate.comp_clustering=true", "inference.trt_engine=e.plan"]
    with caplog.at_level(logging.WARNING, logger="mal"):
        load_spec(None, overrides)
    (line,) = [r.getMessage() for r in caplog.records if "not used here" in r.getMessage()]
    for key in ("model_name", "encryption_key", "train.min_lr", "evaluate.comp_clustering", "inference.trt_engine"):
        assert key in line


def test_required_values_are_named_together_and_never_used(tmp_path, cli):
    data = yaml.safe_load(TEMPLATE.read_text()) | {"results_dir": "???"}
    data["dataset"]["train_ann_path"] = "???"
    spec = _write(tmp_path, data)
    code, _, err = cli("mal", "train", "-e", str(spec), cwd=tmp_path)
    assert code == 2
    assert "dataset.train_ann_path, results_dir: required (`???` in the spec)" in err
    assert not (tmp_path / "???").exists()
    assert load_spec(spec, ["results_dir=/r", "dataset.train_ann_path=a.json"]).results_dir == "/r"


def test_every_problem_is_reported_at_once(tmp_path, cli):
    spec = _write(tmp_path, {"train": {"lrr": 1, "num_epochs": 0}, "model": {"arch": "vit-x"}, "dataset": {"crop_size": "yes"}})
    code, _, err = cli("mal", "train", "-e", str(spec), cwd=tmp_path)
    lines = err.strip().splitlines()
    assert code == 2 and lines[0] == "error: invalid spec: 4 problems" and len(lines) == 5
    assert any("train.lrr: unknown key (did you mean 'train.lr'?)" in line for line in lines)
    assert any("model.arch: 'vit-x' is not allowed" in line for line in lines)


@pytest.mark.parametrize(
    "overrides",
    [["train.seed=-1"], ["model.teacher_momentum=1"], ["train.min_lr_rate=0"], ["train.num_wave=1.5"], ["train.seed=4294967295"]],
)
def test_tao_ranges_are_accepted(overrides):
    load_spec(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["train.validation_interval=5", "train.num_epochs=1"], "train.validation_interval: 5 must be at most num_epochs (1)"),
        (["train.checkpoint_interval=3", "train.num_epochs=2"], "train.checkpoint_interval: 3 epochs must be at most num_epochs (2)"),
        (["train.warmup_epochs=3", "train.num_epochs=2"], "train.warmup_epochs: 3 must be at most num_epochs (2)"),
        (["train.seed=4294967296"], "train.seed: 4294967296 is not allowed"),
        (["train.seed=-2"], "train.seed: -2 is not allowed"),
        (["inference.batch_size=yes"], "inference.batch_size: True is not a number"),
        (["automl.max_trials=no"], "automl.max_trials: False is not a number"),
        (["train.optim_momentum=1"], "AdamW's beta1"),
        (["strategy=fsdp"], "strategy: 'fsdp' is not supported"),
        (["train.learning_rate=1e-5"], "did you mean 'train.lr'"),
        (["train.weight_decay=0.1"], "did you mean 'train.wd'"),
        (["train.epochs=3"], "did you mean 'train.num_epochs'"),
        (["train.lr_min=0.1"], "did you mean 'train.min_lr_rate'"),
    ],
)
def test_tao_assertions_and_foreign_names_give_one_line(overrides, expected):
    (line,) = _problems(None, *overrides)
    assert expected in line


def test_tao_5_layout_says_what_to_rename(tmp_path):
    (line,) = _problems(_write(tmp_path, {"data": {"train_ann_path": "a.json"}, "gpu_ids": [0], "train": {}}))
    assert "TAO 5.0's layout" in line and "`data:` to `dataset:`" in line and "train.gpu_ids" in line


def test_bombs_deep_nesting_and_dotted_keys_give_one_line(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    rows = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefg", "bcdefgh", strict=True)
    ]
    bomb.write_text("\n".join([*rows, "train: {margin_rate: *h}"]) + "\n")
    assert "alias bomb" in _problems(bomb)[0]
    deep = tmp_path / "deep.json"
    for depth in (200, 5000):
        deep.write_text('{"train": ' + "[" * depth + "]" * depth + "}")
        assert "nested" in _problems(deep)[0]
        with pytest.raises(UserError, match="nested"):
            load_space_file(deep)
    dotted = tmp_path / "dotted.yaml"
    dotted.write_text("train:\n  cudnn.benchmark: true\n")
    assert "'cudnn.benchmark' has a dot" in _problems(dotted)[0]


# ------------------------------------------------------------------------------------------ TAO schemas


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_every_train_schema_loads_and_prints(path, cli):
    space_file = load_space_file(path)
    assert space_file.default_parameters and space_file.model == path.name.split("_")[0]
    code, out, _ = cli("automl", "space", str(path))
    assert code == 0 and f"model: {space_file.model}" in out


def test_skill_bank_schema_follows_tao_semantics():
    space_file = load_space_file(TAO / "mal_train.schema.json")
    assert space_file.default_parameters == ["train.lr", "train.wd"]
    # the schema lists `train`, `model` and `dataset` as disabled; TAO decides per leaf, so they stay searchable
    for name in ("train.crf_num_iter", "model.teacher_momentum", "dataset.crop_size"):
        assert name in space_file.parameters and not space_file.is_disabled(name)
    iters = space_file.parameters["train.crf_num_iter"]  # no range: ints from default // 2 to default * 2
    assert (iters.low, iters.high) == (50, 200)
    zeta = space_file.parameters["train.crf_zeta"]  # floats from default / 10 to default * 10
    assert (zeta.low, zeta.high) == (pytest.approx(0.01), pytest.approx(1.0))
    assert space_file.is_disabled("train.mask_thres")  # a list, automl_enabled false
    spec = load_spec(TEMPLATE)
    space = resolve_space(MAL, space_file, spec, ["train.lr", "train.crf_num_iter", "model.teacher_momentum"], {})
    assert sorted(space.names) == ["model.teacher_momentum", "train.crf_num_iter", "train.lr"]


def test_leaves_that_cannot_be_searched_are_noted_not_fatal(tmp_path):
    schema = {
        "x_tao_schema": {"network_arch": "mal"},
        "automl_default_parameters": ["train.lr", "train.batch_size"],
        "properties": {"train": {"properties": {
            "lr": {"type": "float", "default": 1e-6, "minimum": 1e-7, "maximum": 1e-5},
            "batch_size": {"type": "int", "default": 4, "minimum": 4, "maximum": 4},
            "wd": {"type": "float", "default": 5.0, "minimum": 1e-5, "maximum": 1e-2},
            "crf_num_iter": {"type": "int", "default": 100, "minimum": 2, "maximum": 300, "math_cond": "^ 2"},
            "crf_kernel_size": {"type": "int", "default": 3, "math_cond": "% 2"},
            "crf_zeta": {"type": "float", "default": 0.1, "depends_on": "train.wd", "math_cond": "/ 2"},
            "margin_rate": {"type": "list", "default": [0, 1.2]},
        }}},
    }  # fmt: skip
    space_file = load_space_file(_write(tmp_path, schema, "train.schema.json"))
    assert space_file.model == "mal" and space_file.default_parameters == ["train.lr"]
    assert space_file.parameters["train.wd"].default is None  # a default outside its range is only a default
    assert space_file.parameters["train.crf_num_iter"].choices == [2, 4, 8, 16, 32, 64, 128, 256]
    notes = " | ".join(space_file.notes)
    for expected in ("train.batch_size: left out, its range is fixed at 4", "crf_kernel_size: left out, its math_cond '% 2'",
                     "crf_zeta: left out, it is derived as train.wd // 2 in TAO, which needs an int", "train.margin_rate: left out"):  # fmt: skip
        assert expected in notes


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"properties": ["train"]}, "`properties` must be a mapping"),
        ({"automl_default_parameters": "train.lr"}, "`automl_default_parameters` must be a list"),
        ({"automl_disabled_parameters": [1, 2]}, "`automl_disabled_parameters` must be a list"),
    ],
)
def test_malformed_tao_schemas_give_one_line(tmp_path, change, expected, cli):
    schema = json.loads((TAO / "mal_train.schema.json").read_text()) | change
    path = _write(tmp_path, schema, "train.schema.json")
    with pytest.raises(UserError, match=expected):
        load_space_file(path)
    code, _, err = cli("automl", "space", str(path))
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_malformed_leaves_are_left_out(tmp_path):
    schema = json.loads((TAO / "mal_train.schema.json").read_text())
    train = schema["properties"]["train"]["properties"]
    train["lr"] = "fast"
    train["wd"]["type"] = {"float": True}
    train["crf_zeta"]["minimum"] = "low"
    train["crf_num_iter"]["enum"] = {"a": 1}
    schema["default"], schema["x_tao_schema"], schema["popular"] = "x", "y", ["z"]
    space_file = load_space_file(_write(tmp_path, schema, "train.schema.json"))
    assert space_file.model == "train" and not {"train.lr", "train.wd", "train.crf_zeta", "train.crf_num_iter"} & set(space_file.parameters)
    assert len([n for n in space_file.notes if n.startswith(("train.lr", "train.wd", "train.crf_zeta", "train.crf_num_iter"))]) == 4


def test_automl_space_resolves_against_a_spec(cli):
    code, out, _ = cli("automl", "space", str(TAO / "mal_train.schema.json"), "-e", str(TEMPLATE), "automl.hyperparameters=[train.lr]")
    assert code == 0 and "searched (1):\n  train.lr: float in [1e-07, 1e-05]" in out


def test_tao_format_schema_reads_back_as_the_search_space(tmp_path):
    path = _write(tmp_path, tao_schema("train"), "train.schema.json")
    ours, back = load_space_file(MAL.search_space), load_space_file(path)
    assert back.model == ours.model and back.default_parameters == ours.default_parameters
    offered = [n for n in ours.parameters if not ours.is_disabled(n)]
    assert sorted(n for n in back.parameters if not back.is_disabled(n)) == sorted(offered)
    spec = load_spec(None)
    for names in (None, offered):
        a, b = (resolve_space(MAL, f, spec, names, {}) for f in (ours, back))
        dump = sorted((p.model_dump(exclude={"default"}) for p in a.params), key=lambda d: d["name"])
        assert sorted((p.model_dump(exclude={"default"}) for p in b.params), key=lambda d: d["name"]) == dump
        assert a.warm_start == b.warm_start
    leaf = json.loads(path.read_text())["properties"]["dataset"]["properties"]["crop_size"]
    assert leaf["valid_options"] == [96, 128, 192, 256, 384, 512] and leaf["automl_enabled"] is True and leaf["option_weights"]


# ------------------------------------------------------------------------------------------- auto_label


def _autolabel(tmp_path: Path, **mal) -> Path:
    data = {
        "results_dir": str(tmp_path / "out"), "gpu_ids": [0], "num_gpus": 0, "batch_size": 4, "num_workers": 0,
        "autolabel_type": "mal",
        "mal": {"checkpoint": "/ckpt.pth", "inference": {"ann_path": "???", "img_dir": str(GOOD / "images")}, **mal},
    }  # fmt: skip
    return _write(tmp_path, data, "autolabel.yaml")


def test_autolabel_layout_becomes_a_mal_spec(tmp_path):
    path = _autolabel(tmp_path, model={"arch": "vit-micro/8"})
    with pytest.raises(UserError, match="mal.inference.ann_path: required"):
        autolabel_spec(path)
    spec = autolabel_spec(path, ["mal.inference.ann_path=boxes.json", "mal.inference.batch_size=2"])
    i = spec.inference
    assert (i.checkpoint, i.ann_path, i.batch_size, i.num_gpus) == ("/ckpt.pth", "boxes.json", 2, 0)
    assert spec.results_dir == str(tmp_path / "out") and spec.dataset.num_workers_per_gpu == 0
    assert spec.model.arch == "vit-micro/8"
    with pytest.raises(UserError, match="autolabel_type: 'sam' is not supported; supported: mal"):
        autolabel_spec(path, ["autolabel_type=sam"])
    with pytest.raises(UserError, match="gpus: unknown key"):
        autolabel_spec(path, ["gpus=1", "mal.inference.ann_path=x"])


@pytest.mark.slow
def test_auto_label_generate_writes_what_mal_inference_writes(tmp_path):
    from mal.model import build_mal
    from plumbing.torch_files import save_atomic

    good = load_spec(GOOD / "spec.yaml")
    weights = save_atomic(build_mal(good.model, good.dataset.crop_size).state_dict(), tmp_path / "w.pth")
    tiny = {"model": yaml.safe_load((GOOD / "spec.yaml").read_text())["model"], "dataset": {"crop_size": 32}}
    path = _autolabel(tmp_path, **tiny)
    ann = f"mal.inference.ann_path={GOOD / 'annotations.json'}"
    done = run_cli("auto_label", "generate", "-e", str(path), ann, f"mal.checkpoint={weights}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    spec_file = _write(tmp_path, autolabel_spec(path, [ann, f"mal.checkpoint={weights}"]).to_dict() | {"results_dir": str(tmp_path / "mal")})
    assert run_cli("mal", "inference", "-e", str(spec_file), cwd=tmp_path).returncode == 0
    name = "inference/instances_val2017_mal.json"
    assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "mal" / name).read_bytes()


# ------------------------------------------------------------------------------- depends_on with `/ N`


def _derived_schema(tmp_path: Path, **extra) -> Path:
    """MAL's CRF ramp (4000 steps) and MIL ramp (1000): TAO's way of tying the second to the first."""
    train = {
        "loss_crf_step": {"type": "int", "default": 4000, "minimum": 1000, "maximum": 8000},
        "loss_mil_step": {"type": "int", "default": 1000, "depends_on": "train.loss_crf_step", "math_cond": "/ 4"},
        **extra,
    }
    schema = {"x_tao_schema": {"network_arch": "mal", "action": "train"}, "properties": {"train": {"properties": train}},
              "automl_default_parameters": ["train.loss_crf_step", "train.loss_mil_step"]}  # fmt: skip
    return _write(tmp_path, schema, "train.schema.json")


def test_a_depends_on_leaf_is_derived_in_every_trial_and_recorded(tmp_path):
    import numpy as np
    import optuna

    from automl.space import SearchSpace
    from automl.state import LEADERBOARD_FILE, StudyState

    space = resolve_space(MAL, load_space_file(_derived_schema(tmp_path)), load_spec(None), None, {})
    assert space.describe()[1] == "train.loss_mil_step: int = train.loss_crf_step // 4 (derived, not sampled)"
    assert list(space.to_optuna()) == ["train.loss_crf_step"]  # Optuna never samples it
    assert space.warm_start == {"train.loss_crf_step": 4000, "train.loss_mil_step": 1000}
    rng = np.random.default_rng(0)
    draws = [space.random_sample(rng) for _ in range(20)]
    assert all(d["train.loss_mil_step"] == d["train.loss_crf_step"] // 4 for d in draws)
    assert len({d["train.loss_crf_step"] for d in draws}) > 1
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    suggested = space.suggest(trial)
    assert suggested["train.loss_mil_step"] == trial.params["train.loss_crf_step"] // 4
    assert list(trial.params) == ["train.loss_crf_step"]
    assert SearchSpace.from_dict(space.to_dict()) == space
    state = StudyState(tmp_path, {"metric": "mIoU", "mode": "max"}, space)
    state.record("t1", suggested)
    state.write()
    header, row = (tmp_path / LEADERBOARD_FILE).read_text().splitlines()[:2]
    assert "train.loss_mil_step" in header and str(suggested["train.loss_mil_step"]) in row.split(",")


def test_a_derived_leaf_follows_the_spec_when_its_source_is_not_searched(tmp_path):
    space_file = load_space_file(_derived_schema(tmp_path))
    space = resolve_space(MAL, space_file, load_spec(None, ["train.loss_crf_step=2000"]), ["train.loss_mil_step"], {})
    assert space.grid() == [{"train.loss_mil_step": 500}]


@pytest.mark.parametrize(
    ("extra", "names", "overrides", "expected"),
    [
        # the derived value must make a valid spec: crf_kernel_size must be odd, 8000 // 2000 is not
        ({"crf_kernel_size": {"type": "int", "default": 3, "depends_on": "train.loss_crf_step", "math_cond": "/ 2000"}},
         ["train.loss_crf_step", "train.crf_kernel_size"], {},
         "train.crf_kernel_size = train.loss_crf_step // 2000 = 0 (at train.loss_crf_step=1000) is rejected by the spec"),
        ({}, None, {"train.loss_mil_step": {"low": 10, "high": 20}},
         "range_overrides: train.loss_mil_step is derived as train.loss_crf_step // 4, not sampled; narrow train.loss_crf_step"),
    ],
)  # fmt: skip
def test_a_derived_leaf_that_cannot_work_is_one_line(tmp_path, extra, names, overrides, expected):
    space_file = load_space_file(_derived_schema(tmp_path, **extra))
    with pytest.raises(UserError) as info:
        resolve_space(MAL, space_file, load_spec(None), names, overrides)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_pbt_refuses_to_perturb_the_source_of_a_derived_leaf(tmp_path):
    from automl import algorithms

    space = resolve_space(MAL, load_space_file(_derived_schema(tmp_path)), load_spec(None), None, {})
    settings = algorithms.StudySettings("mIoU", "max", 2, 2, 1, 2, 0, MAL.shape_fields)
    with pytest.raises(UserError, match="train.loss_mil_step is derived from train.loss_crf_step, which PBT would perturb"):
        algorithms.build("pbt", space, settings)


def test_tao_format_schema_writes_a_derived_leaf_as_depends_on(tmp_path, monkeypatch):
    from mal.spec import tao_schema as module

    space = yaml.safe_load(module.SEARCH_SPACE.read_text())
    space["parameters"]["train.loss_mil_step"] = {"type": "int", "derive": "train.loss_crf_step // 4"}
    space["parameters"]["train.loss_crf_step"] = {"type": "int", "low": 1000, "high": 8000}
    space["default_parameters"] += ["train.loss_crf_step", "train.loss_mil_step"]
    monkeypatch.setattr(module, "SEARCH_SPACE", _write(tmp_path, space, "space.yaml"))
    leaf = tao_schema("train")["properties"]["train"]["properties"]["loss_mil_step"]
    assert (leaf["depends_on"], leaf["math_cond"]) == ("train.loss_crf_step", "/ 4")
    back = load_space_file(_write(tmp_path, tao_schema("train"), "train.schema.json"))
    assert back.parameters["train.loss_mil_step"].derive == "train.loss_crf_step // 4"


# ------------------------------------------------------------------------------------- the epoch budget


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["automl.max_epochs=1", "automl.hyperparameters=[train.warmup_epochs]"],
         "train.warmup_epochs high=2 is rejected by the spec: train.warmup_epochs: 2 must be at most num_epochs (1) "
         "(every trial trains automl.max_epochs=1 epochs"),
        (["automl.max_epochs=1", "train.num_epochs=5", "train.warmup_epochs=2", "automl.hyperparameters=[train.lr]"],
         "every trial trains automl.max_epochs=1 epochs, for which the spec is invalid: train.warmup_epochs: 2 must be at most num_epochs (1)"),
    ],
)  # fmt: skip
def test_a_budget_below_the_warmup_is_refused_before_any_trial(overrides, expected, cli):
    code, _, err = cli("automl", "space", str(TAO / "mal_train.schema.json"), "-e", str(TEMPLATE), *overrides)
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err


def test_the_trials_epochs_decide_what_a_warmup_range_may_be(tmp_path, cli):
    """A spec of 1 epoch studied for 3: the trials train 3, so a warmup of 2 is fine."""
    from automl.settings import study_config
    from automl.space import study_space

    spec = load_spec(None, ["train.num_epochs=1", "automl.max_epochs=3", "automl.hyperparameters=[train.warmup_epochs]"])
    assert study_space(MAL, spec, study_config(spec)).describe() == ["train.warmup_epochs: int in [0, 2]"]
    images, ann = GOOD / "images", GOOD / "annotations.json"
    data = [f"dataset.{s}_ann_path={ann}" for s in ("train", "val")] + [f"dataset.{s}_img_dir={images}" for s in ("train", "val")]
    code, _, err = cli("automl", "run", "--model", "mal", "-e", str(GOOD / "spec.yaml"), *data, f"results_dir={tmp_path / 's'}",
                       "train.num_epochs=5", "automl.hyperparameters=[train.warmup_epochs]", cwd=tmp_path)  # fmt: skip
    assert code == 2 and "automl.max_epochs=1" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()  # refused before the study folder (and any trial)


# ---------------------------------------------------------------------------- multiples the spec needs


@pytest.mark.parametrize(
    ("overrides", "names", "range_overrides", "expected"),
    [
        ([], ["dataset.crop_size"], {}, "dataset.crop_size: int in [256, 1024] (step 16)"),
        (["model.arch=vit-mae-huge/14", "dataset.crop_size=448"], ["dataset.crop_size"], {}, "dataset.crop_size: int in [266, 1022] (step 14)"),
        (["model.arch=efficientnet-lite0"], ["dataset.crop_size"], {}, "dataset.crop_size: int in [256, 1024] (step 32)"),
        (["dataset.crop_size=448"], ["dataset.crop_size", "model.arch"], {"model.arch": {"choices": ["vit-mae-base/16", "vit-mae-huge/14"]}},
         "dataset.crop_size: int in [336, 1008] (step 112)"),  # a crop every searched backbone can patch
    ],
)  # fmt: skip
def test_a_crop_range_without_a_step_keeps_to_whole_patches(overrides, names, range_overrides, expected):
    import numpy as np

    from mal.spec import with_values

    spec = load_spec(None, overrides)
    space = resolve_space(MAL, load_space_file(TAO / "mal_train.schema.json"), spec, names, range_overrides)
    assert space.describe()[0] == expected
    rng = np.random.default_rng(0)
    for _ in range(30):  # every draw is a spec the trials accept
        with_values(spec, space.random_sample(rng))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "int", "low": 100, "high": 110}, "no value in [100, 110] is a multiple of 16"),
        ({"type": "int", "low": 250, "high": 270}, "only 256 in [250, 270] is a multiple of 16"),
        ({"type": "int", "low": 100, "high": 400, "log": True}, "takes only multiples of 16, which a log scale cannot keep"),
    ],
)
def test_a_crop_range_with_no_room_for_whole_patches_is_one_line(tmp_path, body, expected):
    path = _write(tmp_path, {"model": "mal", "parameters": {"dataset.crop_size": body}})
    with pytest.raises(UserError, match=re.escape(expected)):
        resolve_space(MAL, load_space_file(path), load_spec(None), ["dataset.crop_size"], {})


# ---------------------------------------------------------------------- every file, through every loader


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mal_manifest.json", "is not a search space (a search-space YAML or TAO's train.schema.json): it is a TAO skill's manifest"),
        ("mal_skill_info.yaml", "it is a TAO skill's manifest or skill_info"),
        ("mal_spec_template_train.yaml", "it is an experiment spec (give it with -e SPEC)"),
        ("mal_evaluate.schema.json", "TAO's schema of the `evaluate` action; a study trains"),
        ("mal_inference.schema.json", "TAO's schema of the `inference` action"),
    ],
)  # fmt: skip
def test_files_that_are_not_a_train_search_space_say_what_they_are(name, expected, cli):
    code, _, err = cli("automl", "space", str(TAO / name))
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mal_train.schema.json", "is not an experiment spec: it is TAO's schema of the spec"),
        ("mask2former_train.schema.json", "is not an experiment spec: it is TAO's schema of the spec"),
        ("mal_manifest.json", "is not an experiment spec: it is a TAO skill's manifest or skill_info"),
        ("mal_skill_info.yaml", "is not an experiment spec: it is a TAO skill's manifest or skill_info"),
    ],
)
def test_files_that_are_not_a_spec_say_what_they_are(name, expected, cli, tmp_path):
    code, _, err = cli("mal", "train", "-e", str(TAO / name), cwd=tmp_path)
    assert code == 2 and len(err.strip().splitlines()) == 1 and expected in err


def test_an_auto_label_file_given_to_mal_points_at_auto_label(tmp_path):
    (line,) = _problems(_autolabel(tmp_path))
    assert "it is TAO's auto-label layout; run it with `auto_label generate -e FILE`" in line


def test_the_schemas_own_defaults_are_a_spec(tmp_path):
    for action in ("train", "evaluate", "inference"):
        default = json.loads((TAO / f"mal_{action}.schema.json").read_text())["default"]
        overrides = [] if action == "train" else [f"{action}.checkpoint=/x.pth"]  # TAO's `???`
        load_spec(_write(tmp_path, default), overrides)


def test_another_models_schema_says_whose_it_is(cli):
    code, _, err = cli("automl", "space", str(TAO / "mask2former_train.schema.json"), "-e", str(TEMPLATE))
    assert code == 2 and "(the file is for model 'mask2former', the spec is mal's)" in err


def test_every_leaf_of_the_skill_bank_schema_resolves_or_gives_one_line():
    """Named alone, each searchable leaf either resolves into draws the spec accepts, or is refused in one
    line before any trial (TAO's ranges are wider than the spec here and there)."""
    import numpy as np

    from mal.spec import with_values

    space_file = load_space_file(TAO / "mal_train.schema.json")
    spec = load_spec(TEMPLATE)
    rng = np.random.default_rng(0)
    refused = {}
    for name in (n for n in space_file.parameters if not space_file.is_disabled(n)):
        try:
            space = resolve_space(MAL, space_file, spec, [name], {})
        except UserError as exc:
            assert "\n" not in str(exc) and not exc.details
            refused[name] = str(exc)
            continue
        for _ in range(5):
            with_values(spec, space.random_sample(rng))
    # the ones TAO samples where this spec refuses: 0 for a ratio that must be positive, 1 for AdamW's beta1,
    # an even or too-small CRF kernel, a 0.09 high threshold below the low one, a crop no 14-pixel patch divides
    assert set(refused) == {"model.arch", "model.mask_scale_ratio_pre", "train.crf_kernel_size", "train.crf_size_ratio",
                            "train.crf_value_high_thres", "train.crf_value_low_thres", "train.optim_momentum"}  # fmt: skip
