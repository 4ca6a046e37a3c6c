"""The training DataLoader that Lightning can checkpoint and resume mid-epoch.

It is `_Stateful` (state_dict/load_state_dict), so Lightning stores it in every checkpoint. The module
tells it after each batch how many batches the loop finished: workers prefetch ahead, so only the loop
knows what was really trained on. Restored, the sampler skips exactly those samples.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import DataLoader


class ResumableLoader(DataLoader):
    def mark_batches_done(self, batches: int) -> None:
        self.sampler.consumed = min(batches * self.batch_size, len(self.sampler))

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
