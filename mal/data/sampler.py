"""The order of samples in an epoch: seeded, sharded over DDP ranks, and resumable mid-epoch."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Sampler


def rank_and_world() -> tuple[int, int]:
    """This process's DDP rank and the world size; (0, 1) outside a process group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class EpochSampler(Sampler[int]):
    """A (seed, epoch)-seeded order, sharded over DDP ranks, that resumes mid-epoch.

    Under DDP each rank takes every world-th sample of the epoch's order; with `pad`, the order is first
    repeated up to a multiple of the world size so every rank runs the same number of steps (training
    needs that for its gradient all-reduce; validation does not, and gathers then de-duplicates). The rank
    is read when iterating, because Lightning creates the process group after the loaders exist.

    Data-loader workers pull indices ahead of training, so the sampler cannot count what was trained on:
    the training loop reports this rank's finished samples (`consumed`). `state_dict()` goes into the
    checkpoint; after `load_state_dict()`, the next iteration skips exactly the consumed samples. `__len__`
    stays the full share because Lightning restores its own batch counter and ends the epoch at that length.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True, tag_epoch: bool = False, pad: bool = True) -> None:
        self.n = n
        self.seed = seed
        self.shuffle = shuffle
        self.pad = pad
        # (epoch, index) pairs carry the epoch to the dataset's augmentation seed, even inside worker
        # processes that copied the dataset before Lightning announced the epoch
        self.tag_epoch = tag_epoch
        self.epoch = 0
        self.consumed = 0

    def set_epoch(self, epoch: int) -> None:
        """A new epoch starts from its beginning; re-announcing the current epoch (on resume) keeps the skip."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng((self.seed, self.epoch)).permutation(self.n)

    def share(self) -> np.ndarray:
        """This rank's part of the epoch's order."""
        rank, world = rank_and_world()
        order = self.order()
        if world == 1:
            return order
        if self.pad:
            order = np.resize(order, math.ceil(self.n / world) * world)  # repeats from the start, as DistributedSampler
        return order[rank::world]

    def __iter__(self):
        order = self.share()[self.consumed :].tolist()
        return iter([(self.epoch, i) for i in order] if self.tag_epoch else order)

    def __len__(self) -> int:
        return len(self.share())

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.consumed = int(state["epoch"]), int(state["consumed"])
