"""Starting weights read from the files users have (without running any code they carry) and loaded into a
module by name and shape, with a short report of what was loaded, skipped and missed."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plumbing import torch_files
from plumbing.errors import UserError


def read_weights_file(location: str) -> tuple[dict[str, torch.Tensor], str]:
    """Every tensor of a weights file (unwrapped from `state_dict` / `model`) and the layout it was in."""
    raw = torch_files.load(location, foreign=True)
    layout, state = _unwrap(raw)
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{location}: holds no tensors (layout: {layout})")
    return tensors, layout


def _unwrap(raw: dict[str, Any]) -> tuple[str, dict]:
    if isinstance(raw.get("state_dict"), dict):
        kind = "Lightning checkpoint" if "pytorch-lightning_version" in raw or "optimizer_states" in raw else "checkpoint"
        return f"{kind} (state_dict)", raw["state_dict"]
    if isinstance(raw.get("model"), dict):
        training = [k for k in ("optimizer", "epoch", "scaler", "args") if k in raw]
        if training:
            epoch = raw.get("epoch")
            return f"MAE training checkpoint ('model' + {', '.join(training)}{f', epoch {epoch}' if isinstance(epoch, int) else ''})", raw["model"]
        return "MAE release ({'model': state_dict})", raw["model"]
    return "state dict", raw


def _names(keys: list[str], limit: int = 4) -> str:
    more = f", ... (+{len(keys) - limit})" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_matching(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> list[str]:
    """Load every tensor that fits by name and shape, and say in a few lines what was loaded, skipped, missed.

    Nothing usable is an error, never a silent random init.
    """
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not matched:
        raise UserError(
            f"{source}: no tensor fits the {what} (its keys look like {_names(list(state), 3)}); "
            "is it a weight file for this network?"
        )
    module.load_state_dict(matched, strict=False)
    lines = [f"{what}: loaded {len(matched)}/{len(own)} tensors from {source}"]
    for label, keys in (
        ("missed (kept at init)", [k for k in own if k not in matched]),
        ("skipped (not in this model)", [k for k in state if k not in own]),
        ("skipped (shape differs)", [k for k in state if k in own and state[k].shape != own[k].shape]),
    ):
        if keys:
            lines.append(f"  {label}: {len(keys)}: {_names(keys)}")
    return lines
