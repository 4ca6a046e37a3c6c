"""Backbone names a spec may use, with the facts the spec needs before torch is imported."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ArchInfo:
    timm_name: str  # timm model name; hub weights exist for all but the CPU-sized variants
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    hub_weights: bool = True


ARCHS: dict[str, ArchInfo] = {
    "vit-mae-base/16": ArchInfo("vit_base_patch16_224.mae", 768, 12, 12, 16),
    "vit-mae-large/16": ArchInfo("vit_large_patch16_224.mae", 1024, 24, 16, 16),
    "vit-mae-huge/14": ArchInfo("vit_huge_patch14_224.mae", 1280, 32, 16, 14),
    "vit-deit-tiny/16": ArchInfo("deit_tiny_patch16_224.fb_in1k", 192, 12, 3, 16),
    "vit-deit-small/16": ArchInfo("deit_small_patch16_224.fb_in1k", 384, 12, 6, 16),
    # CPU-sized variants for demos and tests: same code path, random init.
    "vit-micro/16": ArchInfo("vit_micro_patch16", 128, 4, 4, 16, hub_weights=False),
    "vit-micro/8": ArchInfo("vit_micro_patch8", 128, 4, 4, 8, hub_weights=False),
}
