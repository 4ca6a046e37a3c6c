"""TAO's MAL spec files as they are written: fields TAO carries that MAL does not use, names from other
frameworks, and TAO 5.0's older layout (plumbing.spec_reader reads them)."""

from __future__ import annotations

from typing import Any

from plumbing.errors import UserError
from plumbing.spec_reader import other_tao_file

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


def check_layout(data: dict[str, Any], path: Any) -> None:
    """Another of TAO's files given as a spec, or a TAO 5.0 spec (`data:` for `dataset:`, devices at the
    top): one line saying what the file is, or what to rename."""
    kind = other_tao_file(data)
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
