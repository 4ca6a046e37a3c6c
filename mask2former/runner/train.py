"""`mask2former train`: data, network and a Lightning Trainer from a spec; resumes from the latest checkpoint
and keeps the best one by validation mask AP (TAO's checkpoint names)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from mask2former import checkpoint as ckpt
from mask2former.classes import classes_of
from mask2former.data import InstanceImages, eval_resize, loader, train_resize
from mask2former.module import Mask2FormerModule
from mask2former.names import BEST_NAME, LATEST_FILE, LATEST_NAME
from mask2former.objective import objective
from mask2former.spec import ExperimentSpec
from plumbing import step_stopping as stopping
from plumbing.coco import CocoSet, load_coco
from plumbing.csv_log import training_logger
from plumbing.devices import precision, use_gpu
from plumbing.lightning_io import AtomicCheckpointIO
from plumbing.lightning_run import (
    FitResult,
    OutOfMemory,
    keep_best,
    periodic_checkpoints,
    quiet_lightning,
    run_seed,
)

log = logging.getLogger("mask2former")


def validation_images(spec: ExperimentSpec, coco: CocoSet, classes: dict[int, int]) -> InstanceImages:
    """Every image of dataset.val at the test size, without targets (the metrics read the json)."""
    d = spec.dataset
    return InstanceImages(coco, sorted(coco.images), classes, eval_resize(d.augmentation), d.pixel_mean, d.pixel_std, with_targets=False)


def fit(
    spec: ExperimentSpec,
    callbacks: Sequence[Any] = (),
    enable_progress_bar: bool = True,
    logger: Any = None,
    strategy: Any = None,
    plugins: Sequence[Any] = (),
    devices: Any = None,
) -> FitResult:
    """Train with the spec; resume from the given or the latest checkpoint of the train folder.

    `strategy`/`plugins`/`devices` let a launcher that owns the processes (Ray Train) supply its own DDP pieces.
    """
    import lightning as L

    quiet_lightning()
    t, d = spec.train, spec.dataset
    train_dir = spec.output_dir("train")
    train_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(run_seed(t.seed), workers=True, verbose=False)
    torch.backends.cudnn.benchmark = t.cudnn.benchmark
    torch.backends.cudnn.deterministic = t.cudnn.deterministic

    train_coco = load_coco(d.train.instance_json, d.train.img_dir, check_images=True)
    val_coco = load_coco(d.val.instance_json, d.val.img_dir, check_images=True)
    classes = classes_of(spec, train_coco.categories)
    image_ids = sorted({a["image_id"] for a in train_coco.anns if a.get("segmentation") and not a.get("iscrowd")})
    train_set = InstanceImages(train_coco, image_ids, classes, train_resize(d.augmentation), d.pixel_mean, d.pixel_std)
    train_loader = loader(train_set, d.train.batch_size, d.train.num_workers, shuffle=True, pin_memory=d.pin_memory)
    val_loader = loader(validation_images(spec, val_coco, classes), d.val.batch_size, d.val.num_workers, pin_memory=d.pin_memory)

    gpu = use_gpu(t.num_gpus)
    if devices is None:
        devices = t.gpu_ids if gpu else 1
        world = (len(t.gpu_ids) if gpu else 1) * t.num_nodes
    else:
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    batches = math.ceil(len(train_set) / world / d.train.batch_size)
    steps_per_epoch = min(batches, t.iters_per_epoch or batches)
    module = Mask2FormerModule.from_coco(spec, train_coco.categories, classes, val_gt=val_coco.raw, steps_per_epoch=steps_per_epoch)
    metric = objective(spec)
    resume = t.resume_training_checkpoint_path or ckpt.latest(train_dir)
    if not resume:
        from mask2former.pretrained import load_backbone, load_network

        lines = load_backbone(module.net, spec.model.backbone.pretrained_weights)
        if t.pretrained_model_path:
            lines += load_network(module.net, str(ckpt.resolve(t.pretrained_model_path)))
        log.warning("\n".join(lines))
    if t.freeze:
        log.warning("train.freeze: %d tensors frozen", module.net.freeze(t.freeze))

    # a resumed training keeps the metrics rows of its earlier runs (Lightning's CSVLogger deletes them)
    logger, log_callbacks = training_logger(train_dir, logger)
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy if strategy is not None else "ddp" if world > 1 else "auto",
        plugins=[*plugins, AtomicCheckpointIO()],
        precision=precision(t.precision == "fp16", gpu),
        max_epochs=t.num_epochs,
        limit_train_batches=t.iters_per_epoch,
        gradient_clip_val=t.clip_grad_norm,
        gradient_clip_algorithm="value" if t.clip_grad_type == "value" else "norm",
        check_val_every_n_epoch=t.validation_interval,
        callbacks=[
            periodic_checkpoints(train_dir, LATEST_NAME, t.checkpoint_interval, t.checkpoint_interval_unit),
            best := keep_best(train_dir, BEST_NAME, metric),
            *stopping.callbacks(train_dir / LATEST_FILE),
            *callbacks,
            *log_callbacks,
        ],
        logger=logger,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, steps_per_epoch)),
        default_root_dir=train_dir,
    )
    try:
        with stopping.on_signal(trainer):
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None, weights_only=True)
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(
            f"out of {'GPU' if gpu else 'host'} memory at dataset.train.batch_size={d.train.batch_size}, "
            f"train_crop_size={d.augmentation.train_crop_size}: lower one of them ({str(exc).splitlines()[0][:160]})"
        ) from None
    return FitResult.of(train_dir, trainer, best)
