"""Where a model runs: GPU or CPU, the training precision, and autocast for evaluation and labeling."""

from __future__ import annotations

import torch


def use_gpu(num_gpus: int) -> bool:
    return num_gpus > 0 and torch.cuda.is_available()


def device(num_gpus: int) -> torch.device:
    return torch.device("cuda") if use_gpu(num_gpus) else torch.device("cpu")


def precision(use_amp: bool, gpu: bool) -> str:
    """bf16 where the GPU supports it, else fp16; full fp32 on CPU (no fast half kernels there)."""
    if not (use_amp and gpu):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def autocast(on: torch.device, use_amp: bool) -> torch.autocast:
    """Mixed precision on GPU with the same half type as training; a no-op on CPU."""
    dtype = torch.bfloat16 if on.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(on.type, dtype=dtype, enabled=use_amp and on.type == "cuda")


def to_device(batch: dict[str, torch.Tensor], on: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(on, non_blocking=True) for k, v in batch.items()}
