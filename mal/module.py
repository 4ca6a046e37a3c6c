"""The LightningModule: MAL's training step (MIL + CRF losses, the prompt loss where boxes have points or
scribbles, EMA teacher), lr schedule and validation metrics (mIoU where masks exist, box_score everywhere).

The Trainer owns devices, precision and checkpoints (see mal/runner.py).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from mal.box_score import batch_scores
from mal.errors import TrainingFailure
from mal.losses import mal_losses
from mal.metrics import MIoU, class_balanced_mean, coco_mask_ap, region_iou
from mal.model import build_mal
from mal.objective import BOX_METRICS
from mal.predict import InstanceMask, force_prompts, paste_masks, prompted_logits, thresholds_by_bucket
from mal.spec import ExperimentSpec
from mal.threshold_choice import CHECKPOINT_KEY, GRID, at_thresholds, choose
from plumbing.coco import CocoSet, gt_mask


class NonFiniteLossError(TrainingFailure):
    """Training diverged: a NaN/inf loss must stop the run, never be reported as a metric."""


def lr_factor(step: int, steps_per_epoch: int, warmup_epochs: int, num_epochs: int, min_lr_rate: float, num_wave: float) -> float:
    """Per-iteration schedule on the fractional epoch: linear warmup from 0, then cosine down to min_lr_rate.

    Step 0 is already inside the warmup (the original ran its first step at the full lr).
    """
    epoch = (step + 1) / steps_per_epoch
    if epoch < warmup_epochs:
        return epoch / warmup_epochs
    span = max(num_epochs - warmup_epochs, 1e-8)
    progress = min((epoch - warmup_epochs) / span, 1.0)
    return min_lr_rate + (1 - min_lr_rate) * 0.5 * (1 + math.cos(math.pi * progress * num_wave))


class MALModule(L.LightningModule):
    def __init__(
        self, spec: ExperimentSpec, val_coco: CocoSet | None = None, steps_per_epoch: int | None = None,
        choose_threshold: bool = False,
    ) -> None:
        """`choose_threshold`: every validation picks the binarisation threshold (mal.threshold_choice)."""
        super().__init__()
        self.spec = spec
        # Known to the runner; asking the Trainer (estimated_stepping_batches) here would build the train
        # loader before a checkpoint's loader state is restored and break mid-epoch resume.
        self.steps_per_epoch = steps_per_epoch
        self.net = build_mal(spec.model, spec.dataset.crop_size)
        self.val_coco = val_coco
        self._val_anns = {a["id"]: a for a in val_coco.anns} if val_coco else {}
        self._records: list[dict[str, Any]] = []
        self._thresholds = thresholds_by_bucket(spec.train.mask_thres)
        self._grid = GRID if choose_threshold else ()
        self.chosen_threshold: float | None = None

    @property
    def thresholds(self) -> dict[str, float]:
        """The binarisation threshold per box-size bucket: the spec's, or the one chosen on the val set."""
        return self._thresholds

    def use_threshold(self, threshold: float) -> None:
        self.chosen_threshold = threshold
        self._thresholds = dict.fromkeys(self._thresholds, threshold)

    # ------------------------------------------------------------------ training

    def effective_lr(self) -> float:
        """Base lr × crops per optimizer step (devices × nodes × batch × accumulation)."""
        t = self.spec.train
        world = self.trainer.world_size if self._trainer is not None else 1
        return t.lr * world * t.batch_size * t.accum_grad_batches

    def configure_optimizers(self):
        t = self.spec.train
        params = [p for p in self.net.student.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.effective_lr(), betas=(t.optim_momentum, t.optim_betas[1]), eps=t.optim_eps, weight_decay=t.wd
        )
        steps_per_epoch = self.steps_per_epoch or max(1, int(self.trainer.estimated_stepping_batches) // self.trainer.max_epochs)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: lr_factor(step, steps_per_epoch, t.warmup_epochs, t.num_epochs, t.min_lr_rate, t.num_wave),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        loader = self.trainer.train_dataloader
        if hasattr(loader, "mark_batches_done"):
            loader.mark_batches_done(batch_idx + 1)  # what a mid-epoch checkpoint must skip on resume

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        student = self.net.student(batch["image"], batch["box_area"], batch["boxmask"])
        with torch.no_grad():
            teacher, teacher_levels = self.net.teacher.forward_with_levels(batch["timage"], batch["box_area"], batch["boxmask"])
        losses = mal_losses(
            student, teacher, batch["timage"], batch["boxmask"], self.spec.train, step=self.global_step,
            epoch=self.current_epoch, teacher_levels=teacher_levels, prompts=batch.get("prompts"),
            box_given=batch.get("box_given"),
        )
        if not torch.isfinite(losses["loss"]):
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.current_epoch} step {self.global_step} "
                f"(mil={float(losses['loss_mil']):.4g}, crf={float(losses['loss_crf']):.4g}); try a lower train.lr"
            )
        bs = batch["image"].shape[0]
        self.log("loss", losses["loss"], prog_bar=True, batch_size=bs)
        self.log_dict({k: v for k, v in losses.items() if k != "loss"}, batch_size=bs)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return losses["loss"]

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        # the teacher follows each real optimizer step, before any checkpoint of that step is written
        self.net.ema_update(self.spec.model.teacher_momentum)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mal_spec"] = self.spec.to_dict()
        checkpoint["tao_model"] = "mal"
        if self.chosen_threshold is not None:
            checkpoint[CHECKPOINT_KEY] = self.chosen_threshold

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The optimizer's hyperparameters come from this run's spec, not the checkpoint's.

        A plain resume is unchanged by this; a PBT exploit (another trial's checkpoint, perturbed spec)
        would otherwise train on with the donor's lr, weight decay and betas. Lightning restores the
        optimizer and scheduler from this same dict after this hook. A resumed run that chooses its
        threshold goes on from the one chosen before.
        """
        if self._grid and checkpoint.get(CHECKPOINT_KEY) is not None:
            self.use_threshold(float(checkpoint[CHECKPOINT_KEY]))
        t = self.spec.train
        base_lr = self.effective_lr()
        factor = 1.0
        for sched in checkpoint.get("lr_schedulers", []):
            sched["base_lrs"] = [base_lr] * len(sched["base_lrs"])
            step = max(int(sched.get("last_epoch", 0)), 0)  # LambdaLR's count of steps taken
            factor = lr_factor(step, self.steps_per_epoch or 1, t.warmup_epochs, t.num_epochs, t.min_lr_rate, t.num_wave)
        for opt in checkpoint.get("optimizer_states", []):
            for group in opt.get("param_groups", []):
                group.update(
                    lr=base_lr * factor, initial_lr=base_lr, weight_decay=t.wd, eps=t.optim_eps,
                    betas=(t.optim_momentum, t.optim_betas[1]),
                )

    # ------------------------------------------------------------------ validation

    def predict_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Test-time logits; a box with points or scribbles is read with them (mal.predict.prompted_logits)."""
        e = self.spec.evaluate
        logits = self.net.predict(
            batch["image"], batch["box_area"], batch["boxmask"], use_teacher=e.use_teacher_test, use_mixed=e.use_mixed_model_test, use_flip=e.use_flip_test
        )
        features = self.net.teacher if e.use_teacher_test and not e.use_mixed_model_test else self.net.student
        return prompted_logits(features, logits, batch, self._thresholds, e.prompt_refine, e.prompt_keep_weight, e.prompt_spread)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._records += validation_records(self.predict_logits(batch), batch, self._thresholds, self._val_anns, grid=self._grid)

    def on_validation_epoch_start(self) -> None:
        self._records = []

    def on_validation_epoch_end(self) -> None:
        records = self._records
        if self.trainer.world_size > 1:
            gathered: list[list[dict[str, Any]]] = [None] * self.trainer.world_size  # type: ignore[list-item]
            torch.distributed.all_gather_object(gathered, records)
            # DistributedSampler pads with repeats: keep each annotation once
            records = list({r["ann_id"]: r for part in gathered for r in part}.values())
        chosen = None
        if self._grid:  # every rank has every record, so every rank chooses the same
            spec_thres = self.spec.train.mask_thres
            chosen, records = choose(records, self._grid, prefer=sum(spec_thres) / len(spec_thres))
            if chosen is not None:
                self.use_threshold(chosen)
        metrics = compute_metrics(records, self.val_coco.raw if self.val_coco else None)
        if chosen is not None:
            metrics["mask_thres"] = chosen
        self.last_metrics = metrics
        for name, value in metrics.items():
            if isinstance(value, float) and math.isnan(value):
                continue  # an empty size bucket has no mean
            self.log(name, float(value), prog_bar=name == "mIoU", sync_dist=False)
        self._records = []


def validation_records(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], thresholds: dict[str, float], anns: dict[int, dict],
    force: bool = True, grid: tuple[float, ...] = (),
) -> list[dict[str, Any]]:
    """What `compute_metrics` reads of a batch's masks: every box gets its box_score; a box with a ground-truth
    mask also gets its IoU and its detection. `force` sets a box's labelled prompt pixels as they were given.
    `grid`: every box also gets its box_score at each of these thresholds (`scores_at`), and one with a mask
    its IoU and detection (`iou_at`, `det_at`), for mal.threshold_choice.choose."""
    records = []
    scores = batch_scores(logits, batch, thresholds)
    # box_score too at each threshold of the grid, so that the scores a validation reports are all read at the
    # threshold it chooses
    scores_at = [batch_scores(logits, batch, dict.fromkeys(thresholds, t)) for t in grid]
    for k, inst in enumerate(paste_masks(logits, batch, thresholds, keep_prob=bool(grid))):
        ann = anns[inst.ann_id]
        if ann.get("iscrowd", 0):
            continue  # a crowd region is not one instance: neither a box to fill nor a mask to match
        if force:
            inst = force_prompts(inst, ann)
        record = {
            "ann_id": inst.ann_id,
            "category_id": inst.category_id,
            "box_area": inst.box_area,
            **{name: values[k] for name, values in scores.items()},
        }
        if grid:
            record["scores_at"] = [{name: values[k] for name, values in at.items()} for at in scores_at]
        if ann.get("segmentation"):
            truth = gt_mask(ann, *inst.image_hw)
            record["iou"], record["det"] = region_iou(inst.mask, inst.region, truth), _detection(inst)
            if grid:
                masks = [force_prompts(m, ann) if force else m for m in at_thresholds(inst, grid)]
                record["iou_at"] = [region_iou(m.mask, m.region, truth) for m in masks]
                record["det_at"] = [_detection(m) for m in masks]
        records.append(record)
    return records


def _detection(inst: InstanceMask) -> dict[str, Any]:
    return {"image_id": inst.image_id, "category_id": inst.category_id, "segmentation": inst.rle(), "score": inst.score}


def compute_metrics(records: list[dict[str, Any]], gt_dataset: dict | None) -> dict[str, float]:
    """mIoU and mask AP over the boxes with a ground-truth mask (NaN without any), box_score over every box."""
    masked = [r for r in records if "iou" in r]
    acc = MIoU()
    for r in masked:
        acc.add(r["iou"], r["category_id"], r["box_area"])
    metrics = acc.compute()
    if gt_dataset is not None and masked:
        metrics.update(coco_mask_ap(gt_dataset, [r["det"] for r in masked]))
    else:
        metrics.update(mask_AP=float("nan"), mask_AP50=float("nan"))
    categories = [r["category_id"] for r in records]
    for name in BOX_METRICS:
        metrics[name] = class_balanced_mean([r[name] for r in records], categories)
    metrics["num_boxes"] = len(records)
    return metrics
