"""MAL's network: a timm ViT encoder, the K·V mask decoder with scale-adaptive features, and the EMA teacher."""

from __future__ import annotations

import copy
from collections.abc import Callable
from itertools import pairwise

import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from mal.archs import ARCHS
from mal.effnet_lite import EfficientNetLiteEncoder
from mal.errors import UserError
from mal.metrics import BUCKETS, MEDIUM_MAX_AREA, SMALL_MAX_AREA
from mal.spec import ModelConfig

# Feature-map rescale per size bucket (small, medium, large), so small boxes get coarser, large finer masks.
_BUCKET_SCALES = {"small": 0.5, "medium": 1.0, "large": 2.0}
Encoder = VisionTransformer | EfficientNetLiteEncoder


# ---------------------------------------------------------------------------------------------- backbone


def build_backbone(arch: str, crop_size: int, drop_path_rate: float) -> Encoder:
    """A stock timm ViT (standard PatchEmbed, final norm) sized for the crop, so MAE/DeiT weights load as-is;
    or an EfficientNet-Lite trunk with its feature pyramid. Weights are loaded apart (mal.pretrained)."""
    if arch not in ARCHS:
        raise UserError(f"model.arch: {arch!r} is not known; expected one of {', '.join(ARCHS)}")
    info = ARCHS[arch]
    if info.family == "effnet-lite":
        return EfficientNetLiteEncoder(info.timm_name, info.embed_dim, drop_path_rate)
    if not info.hub_weights:
        return VisionTransformer(
            img_size=crop_size,
            patch_size=info.stride,
            embed_dim=info.embed_dim,
            depth=info.depth,
            num_heads=info.num_heads,
            num_classes=0,
            global_pool="",
            class_token=True,
            drop_path_rate=drop_path_rate,
        )
    return timm.create_model(
        info.timm_name,
        pretrained=False,
        img_size=crop_size,
        num_classes=0,
        global_pool="",
        drop_path_rate=drop_path_rate,
    )


def encoder_levels(backbone: Encoder, x: torch.Tensor) -> list[torch.Tensor]:
    """The encoder's feature maps, (B, C, h, w) each: a CNN's pyramid levels, or a ViT's one patch map
    (its cls token dropped: the heads work per pixel)."""
    if isinstance(backbone, EfficientNetLiteEncoder):
        return backbone.levels(x)
    tokens = backbone.forward_features(x)[:, backbone.num_prefix_tokens :]
    h, w = backbone.patch_embed.grid_size
    return [tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)]


def fuse_levels(backbone: Encoder, levels: list[torch.Tensor]) -> torch.Tensor:
    """The one map the heads read."""
    return backbone.fuse(levels) if isinstance(backbone, EfficientNetLiteEncoder) else levels[0]


def _stages(backbone: Encoder) -> list[list[nn.Module | nn.Parameter]]:
    """Stage 0 = patch embedding (+ cls/pos tokens) or the CNN stem; stage i = block (group) i."""
    if isinstance(backbone, EfficientNetLiteEncoder):
        return [[stage] for stage in backbone.stages()]
    tokens = [t for t in (backbone.cls_token, backbone.pos_embed) if t is not None]
    return [[backbone.patch_embed, *tokens], *([block] for block in backbone.blocks)]


def freeze_stages(backbone: Encoder, frozen_stages: list[int]) -> None:
    """Freeze the named stages (see `_stages`); -1 is a no-op (TAO's default)."""
    stages = _stages(backbone)
    for stage in frozen_stages:
        if stage == -1:
            continue
        if not 0 <= stage < len(stages):
            raise UserError(f"model.frozen_stages: {stage} is outside -1..{len(stages) - 1}")
        for part in stages[stage]:
            part.requires_grad_(False)


# ---------------------------------------------------------------------------------------------- heads


class MaskHead(nn.Module):
    """V: 3x3 conv+ReLU stack, upsampled just before the last conv for a finer mask at little cost."""

    def __init__(
        self, in_channels: int, num_convs: int, hidden_channels: int, out_channels: int, scale_ratio: float
    ):
        super().__init__()
        widths = [in_channels] + [hidden_channels] * (num_convs - 1) + [out_channels]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in pairwise(widths))
        self.scale_ratio = scale_ratio
        for conv in self.convs:  # mmcv ConvModule's init, as the original
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.convs) - 1
        for i, conv in enumerate(self.convs):
            if i == last and self.scale_ratio != 1:
                x = F.interpolate(x, scale_factor=self.scale_ratio, mode="bilinear", align_corners=False)
            x = F.relu(conv(x))
        return x


class RoIHead(nn.Module):
    """K: one query vector per crop from the pooled map; K·V then reads the object out of V.

    `pooling="crop"` averages the whole crop (the original). `"box"` averages the box and, apart, the ring
    around it, and the MLP reads both: the key then says what the object looks like next to its
    surroundings, which the network would otherwise have to guess from a crop whose margin is random.
    """

    def __init__(self, in_channels: int, out_channels: int, pooling: str = "crop"):
        super().__init__()
        self.pooling = pooling
        width = 2 * in_channels if pooling == "box" else in_channels
        self.mlp = nn.Sequential(nn.Linear(width, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels))

    def forward(self, feat: torch.Tensor, boxmask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pooling == "crop":
            return self.mlp(feat.mean(dim=(2, 3)))
        if boxmask is None:
            raise ValueError("model.key_pooling=box needs the crop's box mask")
        inside = F.adaptive_avg_pool2d(boxmask.float(), feat.shape[-2:])

        def mean(weights: torch.Tensor) -> torch.Tensor:
            return (feat * weights).sum((2, 3)) / weights.sum((2, 3)).clamp(min=1e-6)

        return self.mlp(torch.cat([mean(inside), mean(1 - inside)], 1))


# ---------------------------------------------------------------------------------------------- network


class MALNet(nn.Module):
    """Encoder + K·V decoder: one crop around one box in, (B, 1, 4h, 4w) mask logits out."""

    def __init__(
        self,
        arch: str,
        crop_size: int,
        mask_head_num_convs: int = 4,
        mask_head_hidden_channel: int = 256,
        mask_head_out_channel: int = 256,
        not_adjust_scale: bool = False,
        mask_scale_ratio_pre: float = 1.0,
        mask_scale_ratio: float = 2.0,
        vit_dpr: float = 0.0,
        frozen_stages: list[int] | tuple[int, ...] = (-1,),
        key_pooling: str = "crop",
    ):
        super().__init__()
        self.backbone = build_backbone(arch, crop_size, vit_dpr)
        freeze_stages(self.backbone, list(frozen_stages))
        channels = ARCHS[arch].embed_dim
        self.roi_head = RoIHead(channels, mask_head_out_channel, key_pooling)
        self.mask_head = MaskHead(
            channels, mask_head_num_convs, mask_head_hidden_channel, mask_head_out_channel, mask_scale_ratio
        )
        self.not_adjust_scale = not_adjust_scale
        self.mask_scale_ratio_pre = mask_scale_ratio_pre
        self.crop_size = crop_size
        self.output_size = 4 * (crop_size // ARCHS[arch].stride)

    def _value(self, feat: torch.Tensor, scale: float) -> torch.Tensor:
        if scale != 1:
            h, w = feat.shape[-2:]
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=False)
        return self.mask_head(feat)

    def _logits(
        self, feat: torch.Tensor, key: torch.Tensor, scale: float, out_size: tuple[int, int]
    ) -> torch.Tensor:
        logits = torch.einsum("bc,bchw->bhw", key, self._value(feat, scale)).unsqueeze(1)
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor, box_area: torch.Tensor, boxmask: torch.Tensor | None = None) -> torch.Tensor:
        """`box_area` is the box's area in original-image pixels; it picks the feature scale. `boxmask`, the
        crop's box, is read by a box-pooled key (model.key_pooling=box)."""
        return self.forward_with_levels(image, box_area, boxmask)[0]

    def forward_with_levels(
        self, image: torch.Tensor, box_area: torch.Tensor, boxmask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Mask logits and the encoder's feature maps they came from."""
        levels = encoder_levels(self.backbone, image)
        return self._decode(fuse_levels(self.backbone, levels), box_area, boxmask), levels

    def _decode(self, feat: torch.Tensor, box_area: torch.Tensor, boxmask: torch.Tensor | None) -> torch.Tensor:
        key = self.roi_head(feat, boxmask)
        out_size = (4 * feat.shape[-2], 4 * feat.shape[-1])
        return self._by_scale(box_area, lambda members, scale: self._logits(feat[members], key[members], scale, out_size))

    def _by_scale(self, box_area: torch.Tensor, run: Callable[[torch.Tensor, float], torch.Tensor]) -> torch.Tensor:
        """`run(members, scale)` on each size bucket's crops at its feature scale, the results in batch order."""
        if self.not_adjust_scale:
            return run(torch.arange(box_area.shape[0], device=box_area.device), self.mask_scale_ratio_pre)
        # Half-open edges, the rule of mal.metrics.area_bucket (the original lost areas of exactly 32² and 96²).
        edges = torch.tensor([SMALL_MAX_AREA, MEDIUM_MAX_AREA], dtype=torch.float32, device=box_area.device)
        bucket = torch.bucketize(box_area.float(), edges, right=True)
        parts, order = [], []
        for index, name in enumerate(BUCKETS):
            members = (bucket == index).nonzero().squeeze(1)
            if members.numel():
                parts.append(run(members, _BUCKET_SCALES[name]))
                order.append(members)
        return torch.cat(parts)[torch.argsort(torch.cat(order))]

    def value_maps(self, image: torch.Tensor, box_area: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) V maps at the logits' size: the logits are K·V per pixel (resizing is linear), so a
        key fitted to a box's points and scribbles can be read out of them (mal.predict.prompted_logits)."""
        feat = fuse_levels(self.backbone, encoder_levels(self.backbone, image))
        out_size = (4 * feat.shape[-2], 4 * feat.shape[-1])
        return self._by_scale(
            box_area,
            lambda members, scale: F.interpolate(self._value(feat[members], scale), size=out_size, mode="bilinear", align_corners=False),
        )


class MAL(nn.Module):
    """Student (trained) and its EMA teacher (never trained; it only sharpens the CRF target)."""

    def __init__(self, student: MALNet):
        super().__init__()
        self.student = student
        self.teacher = copy.deepcopy(student)  # the original initialised the teacher's heads independently
        self.teacher.requires_grad_(False)  # outside the optimizer and DDP's gradient buckets
        self.teacher.eval()

    def train(self, mode: bool = True) -> MAL:
        super().train(mode)
        self.teacher.eval()
        return self

    @torch.no_grad()
    def sync_teacher(self) -> None:
        """Teacher := student, e.g. after loading pretrained weights into the student."""
        self.teacher.load_state_dict(self.student.state_dict())

    @torch.no_grad()
    def ema_update(self, momentum: float) -> None:
        """θ_t ← m·θ_t + (1−m)·θ_s after each optimizer step; buffers are copied."""
        for t, s in zip(self.teacher.parameters(), self.student.parameters(), strict=True):
            t.lerp_(s, 1.0 - momentum)
        for t, s in zip(self.teacher.buffers(), self.student.buffers(), strict=True):
            t.copy_(s)

    @torch.no_grad()
    def predict(
        self,
        image: torch.Tensor,
        box_area: torch.Tensor,
        boxmask: torch.Tensor | None = None,
        use_teacher: bool = False,
        use_mixed: bool = False,
        use_flip: bool = False,
    ) -> torch.Tensor:
        """Test-time logits: student (default), teacher, or their mean; optionally averaged with the mirrored crop."""
        nets = (
            [self.student, self.teacher] if use_mixed else [self.teacher] if use_teacher else [self.student]
        )

        def run(x: torch.Tensor, box: torch.Tensor | None) -> torch.Tensor:
            return torch.stack([net(x, box_area, box) for net in nets]).mean(0)

        logits = run(image, boxmask)
        if use_flip:
            logits = (logits + run(image.flip(-1), None if boxmask is None else boxmask.flip(-1)).flip(-1)) / 2
        return logits


def build_mal(model_cfg: ModelConfig, crop_size: int) -> MAL:
    student = MALNet(
        arch=model_cfg.arch,
        crop_size=crop_size,
        mask_head_num_convs=model_cfg.mask_head_num_convs,
        mask_head_hidden_channel=model_cfg.mask_head_hidden_channel,
        mask_head_out_channel=model_cfg.mask_head_out_channel,
        not_adjust_scale=model_cfg.not_adjust_scale,
        mask_scale_ratio_pre=model_cfg.mask_scale_ratio_pre,
        mask_scale_ratio=model_cfg.mask_scale_ratio,
        vit_dpr=model_cfg.vit_dpr,
        frozen_stages=model_cfg.frozen_stages,
        key_pooling=model_cfg.key_pooling,
    )
    return MAL(student)
