"""The network: transformers' Mask2Former built from the spec's TAO fields, with a timm EfficientNet-Lite or
transformers' Swin as its backbone; starting weights are loaded apart from construction (`load_backbone`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mask2former.backbones import BACKBONES, BackboneInfo
from mask2former.spec.schema import FEATURE_STRIDES, ModelConfig
from plumbing.errors import UserError

ENCODER = "model.pixel_level_module.encoder"  # where the backbone sits in transformers' Mask2Former
BACKBONE_PARAMS = f"model.{ENCODER}."  # its parameters' names in Mask2FormerNet (which holds that model as .model)


def _backbone_config(model: ModelConfig) -> Any:
    from transformers import SwinConfig, TimmBackboneConfig

    info = BACKBONES[model.backbone.type]
    if info.family == "timm":
        # res2..res5 are timm's feature levels 1..4 (strides 4..32); batch norm frozen: batches of 1-4 images
        # would wash out the ImageNet statistics
        return TimmBackboneConfig(backbone=info.timm_name, out_indices=(1, 2, 3, 4), freeze_batch_norm_2d=True)
    s = model.backbone.swin
    return SwinConfig(
        image_size=s.pretrain_img_size, patch_size=s.patch_size, embed_dim=s.embed_dim, depths=s.depths,
        num_heads=s.num_heads, window_size=s.window_size, mlp_ratio=s.mlp_ratio, qkv_bias=s.qkv_bias,
        hidden_dropout_prob=s.drop_rate, attention_probs_dropout_prob=s.attn_drop_rate, drop_path_rate=s.drop_path_rate,
        use_absolute_embeddings=s.ape, out_features=["stage1", "stage2", "stage3", "stage4"],
    )


def mask2former_config(model: ModelConfig, num_labels: int) -> Any:
    """TAO's model.* fields as transformers' Mask2FormerConfig."""
    import transformers
    from transformers import Mask2FormerConfig

    transformers.logging.set_verbosity_error()  # it warns that only Swin is a listed backbone: the timm ones work
    m, head = model.mask_former, model.sem_seg_head
    return Mask2FormerConfig(
        backbone_config=_backbone_config(model),
        num_labels=num_labels,
        feature_size=head.convs_dim,
        mask_feature_size=head.mask_dim,
        encoder_layers=head.transformer_enc_layers,
        encoder_feedforward_dim=4 * head.convs_dim,  # the original's 1024 at its 256 channels
        common_stride=head.common_stride,
        feature_strides=list(FEATURE_STRIDES),
        hidden_dim=m.hidden_dim,
        num_queries=m.num_object_queries,
        num_attention_heads=m.nheads,
        dim_feedforward=m.dim_feedforward,
        decoder_layers=m.dec_layers,
        dropout=m.dropout,
        pre_norm=m.pre_norm,
        use_auxiliary_loss=m.deep_supervision,
        class_weight=m.class_weight,
        mask_weight=m.mask_weight,
        dice_weight=m.dice_weight,
        no_object_weight=m.no_object_weight,
        train_num_points=m.train_num_points,
        oversample_ratio=m.oversample_ratio,
        importance_sample_ratio=m.importance_sample_ratio,
    )


class Mask2FormerNet(nn.Module):
    """transformers' Mask2Former plus the step from the data's normalisation to the one the backbone's weights
    were trained on (EfficientNet-Lite: (x - 0.5) / 0.5)."""

    def __init__(self, model: ModelConfig, num_labels: int, pixel_mean: list[float], pixel_std: list[float]) -> None:
        super().__init__()
        from transformers import Mask2FormerForUniversalSegmentation

        self.info: BackboneInfo = BACKBONES[model.backbone.type]
        self.model = Mask2FormerForUniversalSegmentation(mask2former_config(model, num_labels))
        mean, std = torch.tensor(pixel_mean).view(1, 3, 1, 1), torch.tensor(pixel_std).view(1, 3, 1, 1)
        to_mean = torch.tensor(self.info.input_mean or pixel_mean).view(1, 3, 1, 1)
        to_std = torch.tensor(self.info.input_std or pixel_std).view(1, 3, 1, 1)
        self.register_buffer("_scale", std / to_std, persistent=False)
        self.register_buffer("_shift", (mean - to_mean) / to_std, persistent=False)

    @property
    def encoder(self) -> nn.Module:
        return self.model.get_submodule(ENCODER)

    def forward(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor, **targets: Any) -> Any:
        return self.model(pixel_values=pixel_values * self._scale + self._shift, pixel_mask=pixel_mask, **targets)

    def param_groups(self, lr: float, backbone_multiplier: float, weight_decay: float) -> list[dict[str, Any]]:
        """The backbone at lr x backbone_multiplier, the rest at lr (TAO's and the original's rule)."""
        backbone, rest = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (backbone if name.startswith(BACKBONE_PARAMS) else rest).append(p)
        return [
            {"params": backbone, "lr": lr * backbone_multiplier, "weight_decay": weight_decay},
            {"params": rest, "lr": lr, "weight_decay": weight_decay},
        ]

    def freeze(self, prefixes: list[str]) -> int:
        """Stop training every parameter whose name starts with one of `prefixes` ('backbone' means the
        encoder); a prefix that names nothing is a user error. Returns how many tensors were frozen."""
        names = [n for n, _ in self.named_parameters()]
        frozen = 0
        for prefix in prefixes:
            full = BACKBONE_PARAMS if prefix in ("backbone", "encoder") else prefix
            hits = [n for n in names if n.startswith(full)]
            if not hits:
                raise UserError(f"train.freeze: {prefix!r} names no parameter (use 'backbone', or a prefix such as {names[0].rsplit('.', 2)[0]!r})")
            for name in hits:
                self.get_parameter(name).requires_grad_(False)
            frozen += len(hits)
        return frozen
