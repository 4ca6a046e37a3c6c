"""Lightning's checkpoint writer made atomic. Apart from plumbing.torch_files, which reads and writes torch
files without Lightning (a study's driver checks checkpoints with it, and Lightning's import takes seconds)."""

from __future__ import annotations

from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from plumbing.torch_files import save_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer with temp + rename for local files (its own writes in place)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
        else:
            save_atomic(checkpoint, path)
