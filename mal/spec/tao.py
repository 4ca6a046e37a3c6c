"""TAO's spec files as they are written: `???` (OmegaConf's "required"), fields TAO carries that MAL does not
use, names from other frameworks, and TAO 5.0's older layout."""

from __future__ import annotations

from typing import Any

from plumbing.errors import UserError

REQUIRED = "???"  # OmegaConf's MISSING: TAO's templates mark the values a user must give with it

# Accepted so that TAO's files load, but nothing here reads them: listed once in a warning when they are set.
UNUSED = {
    "model_name": "TAO's model-agnostic task name",
    "encryption_key": "checkpoints are not encrypted",
    "wandb": "W&B is not built in; `automl run` tracks in MLflow",
    "train.min_lr": "the cosine floor is train.lr x train.min_lr_rate",
    "evaluate.comp_clustering": "no clustering step",
    "evaluate.trt_engine": "no TensorRT engines",
    "inference.trt_engine": "no TensorRT engines",
}

# Leaf names other frameworks use (timm, Lightning, mmdet, HF Trainer, Detectron2) -> this spec's leaf name.
FOREIGN_NAMES = {
    "learning_rate": "lr", "base_lr": "lr", "weight_decay": "wd", "epochs": "num_epochs",
    "max_epochs": "num_epochs", "n_epochs": "num_epochs", "lr_min": "min_lr_rate", "min_lr_ratio": "min_lr_rate",
    "warmup": "warmup_epochs", "warmup_epoch": "warmup_epochs", "momentum": "optim_momentum",
    "betas": "optim_betas", "eps": "optim_eps", "optimizer": "optim_type", "accumulate_grad_batches": "accum_grad_batches",
    "grad_accum": "accum_grad_batches", "gradient_accumulation_steps": "accum_grad_batches", "amp": "use_amp",
    "fp16": "use_amp", "mixed_precision": "use_amp", "gpus": "num_gpus", "devices": "num_gpus",
    "check_val_every_n_epoch": "validation_interval", "val_interval": "validation_interval",
    "eval_interval": "validation_interval", "save_interval": "checkpoint_interval", "ckpt_interval": "checkpoint_interval",
    "resume": "resume_training_checkpoint_path", "resume_from": "resume_training_checkpoint_path",
    "pretrained": "pretrained_model_path", "weights": "pretrained_model_path", "output_dir": "results_dir",
    "work_dir": "results_dir", "image_size": "crop_size", "img_size": "crop_size", "input_size": "crop_size",
    "num_workers": "num_workers_per_gpu", "workers": "num_workers_per_gpu", "backbone": "arch",
    "encoder": "arch", "drop_path_rate": "vit_dpr", "ema_momentum": "teacher_momentum", "ema_decay": "teacher_momentum",
}  # fmt: skip


def pop_required(data: dict[str, Any], prefix: str = "") -> list[str]:
    """Remove every value still `???` (nested too) and return their dotted keys, so one error names them all
    and no such value is ever used (a results_dir of `???` would make a folder of that name)."""
    missing = []
    for key in list(data):
        value = data[key]
        if isinstance(value, dict):
            missing += pop_required(value, f"{prefix}{key}.")
        elif value == REQUIRED or (isinstance(value, list) and REQUIRED in value):
            missing.append(f"{prefix}{key}")
            del data[key]
    return missing


def required_problem(missing: list[str]) -> str:
    keys = ", ".join(missing)
    return f"{keys}: required (`???` in the spec) and not set; give {'it' if len(missing) == 1 else 'each'} in the spec or as key=value"


def check_layout(data: dict[str, Any], path: Any) -> None:
    """Another of TAO's files given as a spec, or a TAO 5.0 spec (`data:` for `dataset:`, devices at the
    top): one line saying what the file is, or what to rename."""
    kind = other_file_kind(data)
    if kind:
        raise UserError(f"spec {path} is not an experiment spec: it is {kind}")
    renames = []
    if "data" in data and "dataset" not in data:
        renames.append("`data:` to `dataset:`")
    for key in ("gpu_ids", "num_gpus"):
        if key in data and not isinstance(data.get("mal"), dict):
            renames.append(f"top-level `{key}` to `train.{key}` (and evaluate/inference)")
    if renames:
        raise UserError(f"spec {path} has TAO 5.0's layout; TAO 6 (and this tool) reads it after renaming {' and '.join(renames)}")


def other_file_kind(data: dict[str, Any]) -> str | None:
    """What a file of TAO's skill bank is when it is not an experiment spec, with what to do with it."""
    if "properties" in data and ("x_tao_schema" in data or "automl_default_parameters" in data):
        return ("TAO's schema of the spec (schemas/<action>.schema.json): a study reads it as automl.search_space "
                "and `automl space FILE` shows it; give this command a spec such as spec_template_train.yaml")
    if isinstance(data.get("actions"), dict) and not any(isinstance(data.get(s), dict) for s in ("train", "dataset", "model")):
        return "a TAO skill's manifest or skill_info; the specs are the templates it names (spec_template_<action>.yaml)"
    if "autolabel_type" in data:
        return "TAO's auto-label layout; run it with `auto_label generate -e FILE`"
    return None


def unused_fields(data: dict[str, Any]) -> list[str]:
    """The TAO fields set in the user's data that are accepted but not used, each with why."""
    found = []
    for dotted, why in UNUSED.items():
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        active = node.get("enable") if isinstance(node, dict) else node
        if active:  # an empty string, false, 0 or a disabled wandb section asks for nothing
            found.append(f"{dotted} ({why})")
    return found
