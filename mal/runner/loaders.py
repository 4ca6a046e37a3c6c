"""DataLoaders of crops: the training loader Lightning checkpoints and resumes mid-epoch, and the plain one
that validation, evaluation and labeling read; plus the spec's validation set.

The training loader is `_Stateful` (state_dict/load_state_dict), so Lightning stores it in every checkpoint.
The module tells it after each batch how many batches the loop finished: workers prefetch ahead, so only the
loop knows what was really trained on. Restored, the sampler skips exactly those samples.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from mal.data import MALEvalDataset, collate, eval_instances
from mal.spec import ExperimentSpec
from plumbing.coco import CocoSet, load_coco


class ResumableLoader(DataLoader):
    def mark_batches_done(self, batches: int) -> None:
        self.sampler.consumed = min(batches * self.batch_size, len(self.sampler))

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)


def loader(dataset: Dataset, batch_size: int, workers: int, sampler: Sampler | None = None, train: bool = False) -> DataLoader:
    cls = ResumableLoader if train else DataLoader
    return cls(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def validation_set(spec: ExperimentSpec) -> tuple[CocoSet, MALEvalDataset]:
    """dataset.val_*: the COCO set (with its masks, for the metrics) and the test crops of every box."""
    coco = load_coco(spec.dataset.val_ann_path, spec.dataset.val_img_dir, check_images=True)
    return coco, MALEvalDataset(coco, eval_instances(coco), spec.dataset.crop_size, spec.train.test_margin_rate)
