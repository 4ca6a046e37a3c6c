"""The LightningModule: Mask2Former's training step (transformers' Hungarian-matched class, mask and Dice
losses), TAO's lr schedules, and validation mask AP (pycocotools) on dataset.val.

The Trainer owns devices, precision, clipping and checkpoints (mask2former/runner/train.py).
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from mask2former.classes import category_names
from mask2former.network import Mask2FormerNet
from mask2former.predict import batch_instances
from mask2former.spec import ExperimentSpec
from plumbing.coco_eval import AGNOSTIC_CATEGORY, mask_ap
from plumbing.errors import TrainingFailure

POLY_POWER = 0.9  # Detectron2's WarmupPolyLR


class NonFiniteLossError(TrainingFailure):
    """Training diverged: a NaN/inf loss stops the run, never reported as a metric."""


def lr_factor(step: int, steps_per_epoch: int, optim: Any, num_epochs: int) -> float:
    """TAO's schedules on the fractional epoch: MultiStep (x gamma at each milestone epoch reached), or
    Warmuppoly (linear warmup over the first epoch, then (1 - progress)^0.9 down to 0 at the last step)."""
    epoch = (step + 1) / steps_per_epoch
    if optim.lr_scheduler == "MultiStep":
        return optim.gamma ** sum(epoch > m for m in optim.milestones)
    if epoch < 1:
        return epoch
    progress = min((epoch - 1) / max(num_epochs - 1, 1e-8), 1.0)
    return (1 - progress) ** POLY_POWER


class Mask2FormerModule(L.LightningModule):
    def __init__(
        self, spec: ExperimentSpec, classes: dict[int, int], categories: list[dict[str, Any]],
        val_gt: dict | None = None, steps_per_epoch: int | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.classes = classes  # category id -> class index
        self.categories = categories  # what predictions are labelled with
        self.val_gt = val_gt
        self.steps_per_epoch = steps_per_epoch
        d = spec.dataset
        self.net = Mask2FormerNet(spec.model, spec.model.sem_seg_head.num_classes, d.pixel_mean, d.pixel_std)
        # trained without labels (dataset.class_agnostic): every class index is the one category 'object'
        self.agnostic = categories == [AGNOSTIC_CATEGORY]
        self._category_of = {0: AGNOSTIC_CATEGORY["id"]} if self.agnostic else {index: cid for cid, index in classes.items()}
        self._detections: list[dict[str, Any]] = []
        self._images: list[int] = []

    @classmethod
    def from_coco(cls, spec: ExperimentSpec, categories: dict[int, dict], classes: dict[int, int], **kwargs: Any) -> Mask2FormerModule:
        return cls(spec, classes, category_names(categories, classes, spec.dataset.class_agnostic), **kwargs)

    # ------------------------------------------------------------------ training

    def configure_optimizers(self):
        o = self.spec.train.optim
        optimizer = torch.optim.AdamW(
            self.net.param_groups(o.lr, o.backbone_multiplier, o.weight_decay), betas=(o.momentum, 0.999)
        )
        steps = self.steps_per_epoch or max(1, int(self.trainer.estimated_stepping_batches) // self.trainer.max_epochs)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, steps, o, self.spec.train.num_epochs)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.net(batch["pixel_values"], batch["pixel_mask"], mask_labels=batch["mask_labels"], class_labels=batch["class_labels"])
        loss = out.loss
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.current_epoch} step {self.global_step}; try a lower train.optim.lr"
            )
        size = len(batch["image_id"])
        self.log("loss", loss, prog_bar=True, batch_size=size)
        self.log("lr", self.trainer.optimizers[0].param_groups[-1]["lr"], batch_size=size)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["mask2former_spec"] = self.spec.to_dict()
        checkpoint["categories"] = self.categories
        checkpoint["class_indices"] = {str(cid): index for cid, index in self.classes.items()}
        checkpoint["tao_model"] = "mask2former"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The optimizer's hyperparameters come from this run's spec, not the checkpoint's (a PBT exploit
        trains on another trial's weights with its own values); Lightning restores the rest after this hook."""
        o = self.spec.train.optim
        bases = [o.lr * o.backbone_multiplier, o.lr]  # the two parameter groups of configure_optimizers
        factor = 1.0
        for sched in checkpoint.get("lr_schedulers", []):
            sched["base_lrs"] = bases
            step = max(int(sched.get("last_epoch", 0)), 0)  # LambdaLR's count of steps taken
            factor = lr_factor(step, self.steps_per_epoch or 1, o, self.spec.train.num_epochs)
        for opt in checkpoint.get("optimizer_states", []):
            for group, base in zip(opt.get("param_groups", []), bases, strict=True):
                group.update(lr=base * factor, initial_lr=base, weight_decay=o.weight_decay, betas=(o.momentum, 0.999))

    # ------------------------------------------------------------------ prediction and validation

    def valid_classes(self) -> torch.Tensor:
        """Class indices that name a category; the others' scores are never read."""
        valid = torch.zeros(self.spec.model.sem_seg_head.num_classes)
        valid[list(self._category_of)] = 1
        return valid

    def predict_batch(self, batch: dict[str, Any]) -> list[list[dict[str, Any]]]:
        """Each image's instances, labelled with category ids."""
        out = self.net(batch["pixel_values"], batch["pixel_mask"])
        found = batch_instances(out, batch, self.spec.model.test_topk_per_image, self.valid_classes())
        for instances in found:
            for inst in instances:
                inst["category_id"] = self._category_of[inst.pop("label")]
        return found

    def on_validation_epoch_start(self) -> None:
        self._detections, self._images = [], []

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        for image_id, instances in zip(batch["image_id"], self.predict_batch(batch), strict=True):
            self._images.append(image_id)
            self._detections += [
                {"image_id": image_id, "category_id": i["category_id"], "segmentation": i["rle"], "score": i["score"]}
                for i in instances
            ]

    def on_validation_epoch_end(self) -> None:
        detections, images = self._detections, self._images
        if self.trainer.world_size > 1:
            gathered: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(gathered, (detections, images))
            # a distributed sampler pads with repeats: keep each image's detections once
            by_image: dict[int, list] = {}
            for part_detections, part_images in gathered:
                for image_id in part_images:
                    by_image[image_id] = [d for d in part_detections if d["image_id"] == image_id]
            detections, images = [d for ds in by_image.values() for d in ds], list(by_image)
        metrics = self.metrics(detections, images)
        self.last_metrics = metrics
        for name, value in metrics.items():
            if math.isfinite(value):
                self.log(name, value, prog_bar=name == "mask_AP", sync_dist=False)

    def metrics(self, detections: list[dict[str, Any]], images: list[int]) -> dict[str, float]:
        """Mask AP and its parts over the validated images (each counts, with or without detections)."""
        if self.val_gt is None:
            return {}
        return mask_ap(self.val_gt, detections, image_ids=images, agnostic=self.agnostic)
