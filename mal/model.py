"""MAL's network: a timm ViT encoder, the K·V mask decoder with scale-adaptive features, and the EMA teacher."""

from __future__ import annotations

import argparse
import copy
import pickle
from itertools import pairwise

import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from mal.archs import ARCHS
from mal.errors import UserError
from mal.metrics import BUCKETS, MEDIUM_MAX_AREA, SMALL_MAX_AREA
from mal.spec import ModelConfig
from mal.storage import local_file

# Feature-map rescale per size bucket (small, medium, large), so small boxes get coarser, large finer masks.
_BUCKET_SCALES = {"small": 0.5, "medium": 1.0, "large": 2.0}
# MAE pre-training keys that have no place in the encoder; `mask_token` would also fool timm's
# checkpoint converters into treating the file as DINOv2.
_MAE_ONLY_PREFIXES = ("decoder", "mask_token")


# ---------------------------------------------------------------------------------------------- backbone


def build_backbone(arch: str, crop_size: int, drop_path_rate: float) -> VisionTransformer:
    """A stock timm ViT (standard PatchEmbed, final norm) sized for the crop, so MAE/DeiT weights load as-is."""
    if arch not in ARCHS:
        raise UserError(f"model.arch: {arch!r} is not known; expected one of {', '.join(ARCHS)}")
    info = ARCHS[arch]
    if not info.hub_weights:
        return VisionTransformer(
            img_size=crop_size,
            patch_size=info.patch_size,
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


def spatial_features(backbone: VisionTransformer, x: torch.Tensor) -> torch.Tensor:
    """Patch tokens as a (B, C, h, w) map; the cls token is dropped because the heads work per pixel."""
    tokens = backbone.forward_features(x)[:, backbone.num_prefix_tokens :]
    h, w = backbone.patch_embed.grid_size
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)


def freeze_stages(backbone: VisionTransformer, frozen_stages: list[int]) -> None:
    """Stage 0 = patch embedding (+ cls/pos tokens), stage i = block i; -1 is a no-op (TAO's default)."""
    depth = len(backbone.blocks)
    for stage in frozen_stages:
        if stage == -1:
            continue
        if not 0 <= stage <= depth:
            raise UserError(f"model.frozen_stages: {stage} is outside -1..{depth}")
        if stage == 0:
            backbone.patch_embed.requires_grad_(False)
            for token in (backbone.cls_token, backbone.pos_embed):
                if token is not None:
                    token.requires_grad_(False)
        else:
            backbone.blocks[stage - 1].requires_grad_(False)


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
    """K: one query vector per crop from the pooled map; K·V then reads the object out of V."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_channels, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels)
        )

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.mlp(feat.mean(dim=(2, 3)))


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
    ):
        super().__init__()
        self.backbone = build_backbone(arch, crop_size, vit_dpr)
        freeze_stages(self.backbone, list(frozen_stages))
        channels = self.backbone.embed_dim
        self.roi_head = RoIHead(channels, mask_head_out_channel)
        self.mask_head = MaskHead(
            channels, mask_head_num_convs, mask_head_hidden_channel, mask_head_out_channel, mask_scale_ratio
        )
        self.not_adjust_scale = not_adjust_scale
        self.mask_scale_ratio_pre = mask_scale_ratio_pre
        self.crop_size = crop_size
        self.output_size = 4 * self.backbone.patch_embed.grid_size[0]

    def _logits(
        self, feat: torch.Tensor, key: torch.Tensor, scale: float, out_size: tuple[int, int]
    ) -> torch.Tensor:
        if scale != 1:
            h, w = feat.shape[-2:]
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            feat = F.interpolate(feat, size=size, mode="bilinear", align_corners=False)
        value = self.mask_head(feat)
        logits = torch.einsum("bc,bchw->bhw", key, value).unsqueeze(1)
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)

    def forward(self, image: torch.Tensor, box_area: torch.Tensor) -> torch.Tensor:
        """`box_area` is the box's area in original-image pixels; it picks the feature scale."""
        feat = spatial_features(self.backbone, image)
        key = self.roi_head(feat)
        out_size = (4 * feat.shape[-2], 4 * feat.shape[-1])
        if self.not_adjust_scale:
            return self._logits(feat, key, self.mask_scale_ratio_pre, out_size)
        # Half-open edges, the rule of mal.metrics.area_bucket (the original lost areas of exactly 32² and 96²).
        edges = torch.tensor([SMALL_MAX_AREA, MEDIUM_MAX_AREA], dtype=torch.float32, device=box_area.device)
        bucket = torch.bucketize(box_area.float(), edges, right=True)
        parts, order = [], []
        for index, name in enumerate(BUCKETS):
            members = (bucket == index).nonzero().squeeze(1)
            if members.numel():
                parts.append(self._logits(feat[members], key[members], _BUCKET_SCALES[name], out_size))
                order.append(members)
        return torch.cat(parts)[torch.argsort(torch.cat(order))]


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
        use_teacher: bool = False,
        use_mixed: bool = False,
        use_flip: bool = False,
    ) -> torch.Tensor:
        """Test-time logits: student (default), teacher, or their mean; optionally averaged with the mirrored crop."""
        nets = (
            [self.student, self.teacher] if use_mixed else [self.teacher] if use_teacher else [self.student]
        )

        def run(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([net(x, box_area) for net in nets]).mean(0)

        logits = run(image)
        if use_flip:
            logits = (logits + run(image.flip(-1)).flip(-1)) / 2
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
    )
    return MAL(student)


# ---------------------------------------------------------------------------------------------- pretrained


def _names(keys: list[str], limit: int = 5) -> str:
    more = f", ... (+{len(keys) - limit})" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _fit_pos_embed(state: dict[str, torch.Tensor], key: str, backbone: VisionTransformer) -> None:
    """Resample a checkpoint's pos_embed (e.g. MAE's 14x14 grid at 224 px) to this crop's grid."""
    if key in state and state[key].shape != backbone.pos_embed.shape:
        state[key] = resample_abs_pos_embed(
            state[key],
            new_size=list(backbone.patch_embed.grid_size),
            num_prefix_tokens=backbone.num_prefix_tokens,
        )


def _load_matching(module: nn.Module, state: dict[str, torch.Tensor], what: str, source: str) -> str:
    """Non-strict load that says what it skipped; nothing usable is an error, not a silent random init."""
    own = module.state_dict()
    matched = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not matched:
        raise UserError(
            f"{source}: no tensor fits the {what} (checkpoint keys look like {_names(list(state), 3)}); "
            "is it a weight file for this model.arch?"
        )
    module.load_state_dict(matched, strict=False)
    message = f"{what}: loaded {len(matched)}/{len(own)} tensors from {source}"
    for label, keys in (
        ("missing", [k for k in own if k not in matched]),
        ("unexpected", [k for k in state if k not in own]),
        ("shape mismatch", [k for k in state if k in own and state[k].shape != own[k].shape]),
    ):
        if keys:
            message += f"; {label}: {_names(keys)}"
    return message


def _student_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`student.*` keys, also under a wrapper prefix such as Lightning's `model.student.*`."""
    out = {}
    for key, value in state.items():
        head, sep, rest = key.partition("student.")
        if sep and (not head or head.endswith(".")):
            out[rest] = value
    return out


def _read_state_dict(location: str) -> dict[str, torch.Tensor]:
    path = local_file(location)
    try:
        # MAE's training checkpoints carry their argparse.Namespace; it is plain data, so allow it.
        with torch.serialization.safe_globals([argparse.Namespace]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise UserError(
            f"{location}: not a loadable weights-only torch checkpoint ({str(exc).splitlines()[0]})"
        ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise UserError(f"{location}: expected a state dict, found {type(state).__name__}")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _hub_state_dict(name: str, crop_size: int) -> dict[str, torch.Tensor]:
    try:
        hub = timm.create_model(name, pretrained=True, img_size=crop_size, num_classes=0, global_pool="")
    except (OSError, RuntimeError) as exc:
        raise UserError(
            f"timm:{name}: could not get the hub weights ({str(exc).splitlines()[0]}); they need internet "
            "access once (then the HF cache), or set train.pretrained_model_path to a local .pth file"
        ) from None
    return hub.state_dict()


def load_pretrained(model: MAL, path_or_hub: str) -> str:
    """Load 'timm:<name>' hub weights, a MAE/ViT file (backbone) or a MAL checkpoint (student); teacher follows."""
    student = model.student
    if path_or_hub.startswith("timm:"):
        name = path_or_hub.removeprefix("timm:")
        message = _load_matching(
            student.backbone, _hub_state_dict(name, student.crop_size), "backbone", path_or_hub
        )
    else:
        state = _read_state_dict(path_or_hub)
        mal_state = _student_keys(state)
        if mal_state:
            _fit_pos_embed(mal_state, "backbone.pos_embed", student.backbone)
            message = _load_matching(student, mal_state, "student (backbone + heads)", path_or_hub)
        else:
            dropped = [k for k in state if k.startswith(_MAE_ONLY_PREFIXES)]
            state = {k: v for k, v in state.items() if k not in dropped}
            _fit_pos_embed(state, "pos_embed", student.backbone)
            message = _load_matching(student.backbone, state, "backbone", path_or_hub)
            if dropped:
                message += f"; ignored {len(dropped)} MAE decoder tensors"
    model.sync_teacher()
    return message
