"""`mal train`: data, MAL and a Lightning Trainer from a spec; resumes from the latest checkpoint and keeps
the best one by validation mIoU, or box_score on a box-only validation set (TAO's checkpoint names)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch

from mal import checkpoint as ckpt
from mal.data import EpochSampler, MALTrainDataset, rank_and_world, usable_train_instances
from mal.module import MALModule
from mal.names import BEST_NAME, LATEST_FILE, LATEST_NAME
from mal.objective import judged_by
from mal.runner.loaders import loader, validation_set
from mal.spec import ExperimentSpec
from plumbing import step_stopping as stopping
from plumbing.coco import load_coco
from plumbing.coco_prompts import has_prompts
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

log = logging.getLogger("mal")


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

    `strategy`/`plugins`/`devices` let a launcher that owns the processes (Ray Train) supply its own DDP
    pieces (checkpoints are still written atomically); `world` is then what that launcher started.
    """
    import lightning as L

    quiet_lightning()
    t, d = spec.train, spec.dataset
    train_dir = spec.output_dir("train")
    train_dir.mkdir(parents=True, exist_ok=True)
    seed = L.seed_everything(run_seed(t.seed), workers=True, verbose=False)
    torch.backends.cudnn.benchmark = t.cudnn.benchmark
    torch.backends.cudnn.deterministic = t.cudnn.deterministic

    train_coco = load_coco(d.train_ann_path, d.train_img_dir, check_images=True)
    instances, skipped = usable_train_instances(train_coco, d.min_obj_size, d.max_obj_size)
    if skipped:
        log.warning("training on %d boxes; skipped %d outside the size filter or crowd", len(instances), skipped)
    train_set = MALTrainDataset(train_coco, instances, d.crop_size, t.margin_rate, seed)
    val_coco, val_set = validation_set(spec)
    metric = judged_by(spec, val_coco)
    gpu = use_gpu(t.num_gpus)
    if devices is None:
        devices = t.gpu_ids if gpu else t.cpu_processes
        world = (len(t.gpu_ids) if gpu else t.cpu_processes) * t.num_nodes
    else:
        world = rank_and_world()[1]  # the launcher has already made the process group
    if not gpu and t.cpu_processes > 1 and strategy is None:
        # each DDP process on CPU gets its share of the cores instead of all of them (oversubscription)
        torch.set_num_threads(max(1, torch.get_num_threads() // t.cpu_processes))
    workers = d.num_workers_per_gpu
    # Our samplers shard over ranks themselves (Lightning's wrapper would break the mid-epoch resume).
    train_sampler = EpochSampler(len(train_set), seed, tag_epoch=True)
    train_loader = loader(train_set, t.batch_size, workers, train_sampler, train=True)
    val_loader = loader(val_set, spec.evaluate.batch_size, workers, EpochSampler(len(val_set), 0, shuffle=False, pad=False))

    batches_per_rank = math.ceil(len(train_set) / world / t.batch_size)
    choose = t.choose_mask_thres if t.choose_mask_thres is not None else any(map(has_prompts, instances))
    if choose:
        why = "" if t.choose_mask_thres else " (the training boxes have points or scribbles)"
        log.warning("choosing train.mask_thres on the val set at every validation%s", why)
    module = MALModule(spec, val_coco, steps_per_epoch=math.ceil(batches_per_rank / t.accum_grad_batches), choose_threshold=choose)
    resume = t.resume_training_checkpoint_path or ckpt.latest(train_dir)
    if not resume:
        from mal.pretrained import load_pretrained

        log.warning("\n".join(load_pretrained(module.net, t.pretrained_model_path, spec.model.arch)))

    periodic = periodic_checkpoints(train_dir, LATEST_NAME, t.checkpoint_interval, t.checkpoint_interval_unit)
    best = keep_best(train_dir, BEST_NAME, metric)

    # a resumed training keeps the metrics rows of its earlier runs (Lightning's CSVLogger deletes them)
    logger, log_callbacks = training_logger(train_dir, logger)
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy if strategy is not None else "ddp" if world > 1 else "auto",
        plugins=[*plugins, AtomicCheckpointIO()],
        use_distributed_sampler=False,
        precision=precision(t.use_amp, gpu),
        max_epochs=t.num_epochs,
        accumulate_grad_batches=t.accum_grad_batches,
        check_val_every_n_epoch=t.validation_interval,
        callbacks=[periodic, best, *stopping.callbacks(train_dir / LATEST_FILE), *callbacks, *log_callbacks],
        logger=logger,
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, len(train_loader))),
        default_root_dir=train_dir,
    )
    try:
        with stopping.on_signal(trainer):
            trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None, weights_only=True)
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(
            f"out of {'GPU' if gpu else 'host'} memory at dataset.crop_size={d.crop_size}, train.batch_size={t.batch_size}: "
            f"lower one of them (or set train.use_amp=true) ({str(exc).splitlines()[0][:160]})"
        ) from None
    return FitResult.of(train_dir, trainer, best)
