"""Entry points behind `mal train | evaluate | inference` (and the automl registry): build data, model and
Trainer from a spec, run, write the contract's files."""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from mal import checkpoint as ckpt
from mal.coco import CocoSet, gt_mask, load_coco
from mal.data import (
    EpochSampler,
    MALEvalDataset,
    MALTrainDataset,
    UnitCrops,
    collate,
    eval_instances,
    eval_margins,
    label_units,
    rank_and_world,
    train_instances,
    unit_crops,
)
from mal.errors import TrainingFailure, UserError
from mal.loader import ResumableLoader
from mal.metrics import region_iou
from mal.module import MALModule, compute_metrics
from mal.predict import InstanceMask, paste_masks, thresholds_by_bucket
from mal.spec import ExperimentSpec, with_values
from mal.storage import atomic_write_text

log = logging.getLogger("mal")


class OutOfMemory(TrainingFailure):
    """A training run did not fit in memory; the message says which knob to turn."""


@dataclass
class FitResult:
    train_dir: Path
    epochs_run: int
    best_metric: float
    best_checkpoint: Path | None
    history: list[dict[str, float]]

    @classmethod
    def of(cls, train_dir: Path, trainer: Any, best: Any, history: list[dict[str, float]]) -> FitResult:
        """What a finished Trainer and its best-checkpoint callback say about the run."""
        score = best.best_model_score
        return cls(
            train_dir=train_dir,
            epochs_run=trainer.current_epoch,
            best_metric=float(score) if score is not None else float("nan"),
            best_checkpoint=Path(best.best_model_path) if best.best_model_path else None,
            history=history,
        )


def _quiet_lightning() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*Found .* module.*in eval mode.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*Checkpoint directory .* exists and is not empty.*")  # resuming there is the point


def use_gpu(num_gpus: int) -> bool:
    return num_gpus > 0 and torch.cuda.is_available()


def precision(use_amp: bool, gpu: bool) -> str:
    """bf16 where the GPU supports it, else fp16; full fp32 on CPU (no fast half kernels there)."""
    if not (use_amp and gpu):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def _loader(dataset, batch_size: int, workers: int, sampler=None, train: bool = False):
    cls = ResumableLoader if train else torch.utils.data.DataLoader
    return cls(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=workers > 0,
    )


def _val_set(spec: ExperimentSpec, ann_path: str, img_dir: str) -> tuple[CocoSet, MALEvalDataset]:
    coco = load_coco(ann_path, img_dir, check_images=True)
    dataset = MALEvalDataset(coco, eval_instances(coco), spec.dataset.crop_size, spec.train.test_margin_rate)
    return coco, dataset


def fit(
    spec: ExperimentSpec,
    callbacks: Sequence[Any] = (),
    enable_progress_bar: bool = True,
    logger: Any = None,
    strategy: Any = None,
    plugins: Sequence[Any] | None = None,
    devices: Any = None,
) -> FitResult:
    """Train with the spec; resume from the given or the latest checkpoint of the train folder.

    `strategy`/`plugins`/`devices` let a launcher that owns the processes (Ray Train) supply its own DDP
    pieces; `world` is then what that launcher started.
    """
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    _quiet_lightning()
    t, d = spec.train, spec.dataset
    train_dir = spec.output_dir("train")
    train_dir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(t.seed, workers=True, verbose=False)

    train_coco = load_coco(d.train_ann_path, d.train_img_dir, check_images=True)
    instances, skipped = train_instances(train_coco, d.min_obj_size, d.max_obj_size)
    if not instances:
        raise UserError(
            f"{d.train_ann_path}: no training box passes dataset.min_obj_size={d.min_obj_size:g} < w*h < "
            f"max_obj_size={d.max_obj_size:g} (and w, h > 2)"
        )
    if skipped:
        log.warning("training on %d boxes; skipped %d outside the size filter or crowd", len(instances), skipped)
    train_set = MALTrainDataset(train_coco, instances, d.crop_size, t.margin_rate, t.seed)
    val_coco, val_set = _val_set(spec, d.val_ann_path, d.val_img_dir)
    gpu = use_gpu(t.num_gpus)
    if devices is None:
        devices = t.gpu_ids if gpu else t.cpu_processes
        world = (len(t.gpu_ids) if gpu else t.cpu_processes) * t.num_nodes
    else:
        world = rank_and_world()[1]  # the launcher has already made the process group
    if not gpu and t.cpu_processes > 1 and strategy is None:
        # each DDP process on CPU gets its share of the cores instead of all of them (oversubscription)
        torch.set_num_threads(max(1, torch.get_num_threads() // t.cpu_processes))
    workers = d.num_workers_per_gpu
    # Our samplers shard over ranks themselves (Lightning's wrapper would break the mid-epoch resume).
    train_sampler = EpochSampler(len(train_set), t.seed, tag_epoch=True)
    train_loader = _loader(train_set, t.batch_size, workers, train_sampler, train=True)
    val_loader = _loader(val_set, spec.evaluate.batch_size, workers, EpochSampler(len(val_set), 0, shuffle=False, pad=False))

    batches_per_rank = math.ceil(len(train_set) / world / t.batch_size)
    module = MALModule(spec, val_coco, steps_per_epoch=math.ceil(batches_per_rank / t.accum_grad_batches))
    resume = t.resume_training_checkpoint_path or ckpt.latest(train_dir)
    if not resume:
        from mal.pretrained import load_pretrained

        log.warning("\n".join(load_pretrained(module.net, t.pretrained_model_path, spec.model.arch)))

    periodic = ModelCheckpoint(
        dirpath=train_dir,
        filename=ckpt.STEP_TEMPLATE if t.checkpoint_interval_unit == "step" else ckpt.EPOCH_TEMPLATE,
        auto_insert_metric_name=False,
        save_top_k=-1,
        save_last=True,
        enable_version_counter=False,  # a resumed run overwrites mal_model_latest.pth, never writes -v1 copies
        every_n_epochs=t.checkpoint_interval if t.checkpoint_interval_unit == "epoch" else None,
        every_n_train_steps=t.checkpoint_interval if t.checkpoint_interval_unit == "step" else None,
    )
    periodic.CHECKPOINT_NAME_LAST = ckpt.LATEST_NAME
    periodic.FILE_EXTENSION = ckpt.EXTENSION
    # Written when validation ends, so it exists before any end-of-epoch hook reports that score
    # (a scheduler may stop a trial inside its report; Lightning's default would save after that).
    best = ModelCheckpoint(
        dirpath=train_dir, filename=ckpt.BEST_NAME, monitor="mIoU", mode="max", save_top_k=1,
        enable_version_counter=False, save_on_train_epoch_end=False,
    )
    best.FILE_EXTENSION = ckpt.EXTENSION
    history = HistoryCallback()

    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu",
        devices=devices,
        num_nodes=t.num_nodes,
        strategy=strategy if strategy is not None else "ddp" if world > 1 else "auto",
        plugins=plugins if plugins is not None else [ckpt.AtomicCheckpointIO()],
        use_distributed_sampler=False,
        precision=precision(t.use_amp, gpu),
        max_epochs=t.num_epochs,
        accumulate_grad_batches=t.accum_grad_batches,
        check_val_every_n_epoch=t.validation_interval,
        callbacks=[periodic, best, history, *callbacks],
        logger=logger if logger is not None else CSVLogger(train_dir, name="", version="logs"),
        enable_progress_bar=enable_progress_bar,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, len(train_loader))),
        default_root_dir=train_dir,
    )
    try:
        trainer.fit(module, train_loader, val_loader, ckpt_path=str(resume) if resume else None, weights_only=True)
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(
            f"out of {'GPU' if gpu else 'host'} memory at dataset.crop_size={d.crop_size}, train.batch_size={t.batch_size}: "
            f"lower one of them (or set train.use_amp=true) ({str(exc).splitlines()[0][:160]})"
        ) from None
    return FitResult.of(train_dir, trainer, best, history.rows)


class HistoryCallback(Callback):
    """Collects the validation metrics of every epoch (for reports and trial tracking)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        row = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        row["epoch"] = trainer.current_epoch + 1
        self.rows.append(row)


# ---------------------------------------------------------------------------------------------- evaluate / infer


def _device(num_gpus: int) -> torch.device:
    return torch.device("cuda") if use_gpu(num_gpus) else torch.device("cpu")


def load_module(spec: ExperimentSpec, checkpoint_path: str, val_coco: CocoSet | None = None) -> MALModule:
    """A MALModule with a checkpoint's weights; a mismatch with model.* names what the checkpoint was."""
    raw = ckpt.load(checkpoint_path, foreign=True)
    module = MALModule(spec, val_coco)
    state = ckpt.network_state(raw)
    if not any(k.startswith("teacher.") for k in state):  # a student-only weights file: the teacher is its copy
        state |= {f"teacher.{k.removeprefix('student.')}": v for k, v in state.items()}
    trained = raw.get("mal_spec", {}).get("model", {})
    hint = f" (it was trained with model.arch={trained.get('arch')})" if trained else ""
    try:
        result = module.net.load_state_dict(state, strict=False)
    except RuntimeError:  # a tensor of the wrong shape
        raise UserError(f"{checkpoint_path} does not fit model.arch={spec.model.arch} and its head settings{hint}") from None
    if result.missing_keys:
        raise UserError(
            f"{checkpoint_path} does not fit model.arch={spec.model.arch}: it has no {result.missing_keys[0]} "
            f"(+{len(result.missing_keys) - 1} more){hint}"
        )
    ignored = f"; ignored {len(result.unexpected_keys)} others, e.g. {result.unexpected_keys[0]}" if result.unexpected_keys else ""
    log.warning("loaded %d tensors (student and teacher) from %s%s", len(state) - len(result.unexpected_keys), checkpoint_path, ignored)
    return module.eval()


def _autocast(device: torch.device, use_amp: bool):
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device.type, dtype=dtype, enabled=use_amp and device.type == "cuda")


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def write_json(data: Any, path: Path) -> Path:
    return atomic_write_text(path, json.dumps(data))


def evaluate(spec: ExperimentSpec) -> tuple[dict[str, float], Path]:
    """mIoU (all/small/medium/large), mask AP and AP50 of evaluate.checkpoint on dataset.val_*."""
    e = spec.evaluate
    val_coco, val_set = _val_set(spec, spec.dataset.val_ann_path, spec.dataset.val_img_dir)
    device = _device(e.num_gpus)
    module = load_module(spec, e.checkpoint, val_coco).to(device)
    loader = _loader(val_set, e.batch_size, spec.dataset.num_workers_per_gpu)
    module.on_validation_epoch_start()
    with torch.inference_mode(), _autocast(device, spec.train.use_amp):
        for i, batch in enumerate(loader):
            module.validation_step(_to(batch, device), i)
    metrics = compute_metrics(module._records, val_coco.raw)
    metrics["checkpoint"] = str(e.checkpoint)
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}
    return clean, write_json(clean, spec.output_dir("evaluate") / "metrics.json")


# An inference engine labels units (mal.data.label_units) and yields their annotations in any order, plus
# words for what did the work ("2 Ray actors"). "local" is below; others come from installed packages
# through this entry-point group (automl offers "ray"), so mal itself needs no Ray.
ENGINE_GROUP = "mal.inference_engines"
Engine = Callable[[ExperimentSpec, list[list[dict]]], tuple[Iterable[dict[str, Any]], str]]


class Labeler:
    """A loaded MAL with its crop and threshold settings: one unit of boxes in, their annotations out.

    Every engine calls `label` on the same units, so every engine writes the same masks.
    """

    def __init__(self, spec: ExperimentSpec, device: torch.device | None = None) -> None:
        inf = spec.inference
        self.device = device if device is not None else _device(inf.num_gpus)
        self.module = load_module(spec, inf.checkpoint).to(self.device)  # once per labeler: per process or actor
        self.use_amp = spec.train.use_amp
        self.with_iou = inf.load_mask
        self.thresholds = thresholds_by_bucket(spec.train.mask_thres)
        self.margins = eval_margins(spec.train.test_margin_rate)
        self.crop_size = spec.dataset.crop_size

    def label(self, unit: list[dict], crops: dict[str, torch.Tensor] | None = None) -> list[dict[str, Any]]:
        """`crops` are the unit's `unit_crops` when a data-loader worker made them ahead."""
        crops = unit_crops(unit, self.margins, self.crop_size) if crops is None else crops
        boxes = {box["id"]: box for record in unit for box in record["boxes"]}
        with torch.inference_mode(), _autocast(self.device, self.use_amp):
            logits = self.module.predict_logits(_to(crops, self.device))
            return [self._annotation(inst, boxes[inst.ann_id]) for inst in paste_masks(logits, crops, self.thresholds)]

    def _annotation(self, inst: InstanceMask, box: dict) -> dict[str, Any]:
        out = {
            "id": inst.ann_id,
            "image_id": inst.image_id,
            "category_id": inst.category_id,
            "bbox": box["bbox"],
            "segmentation": inst.rle(),
            "area": float(inst.mask.sum()),  # the mask's area (the original wrote the box's)
            "iscrowd": int(box.get("iscrowd", 0)),
            "score": round(inst.score, 4),
        }
        if self.with_iou and box.get("segmentation"):
            out["iou"] = round(region_iou(inst.mask, inst.region, gt_mask(box, *inst.image_hw)), 4)
        return out


def label_locally(spec: ExperimentSpec, units: list[list[dict]]) -> tuple[Iterable[dict[str, Any]], str]:
    """This process: one model, data-loader workers decoding and cropping the next units."""
    labeler = Labeler(spec)
    workers = spec.dataset.num_workers_per_gpu
    loader = torch.utils.data.DataLoader(
        UnitCrops(units, labeler.margins, labeler.crop_size),
        batch_size=None,  # a unit is already one network batch
        num_workers=workers,
        pin_memory=labeler.device.type == "cuda",
    )
    annotations = (ann for unit, crops in zip(units, loader, strict=True) for ann in labeler.label(unit, crops))
    return annotations, "1 process"


def _engine(name: str) -> Engine:
    if name == "local":
        return label_locally
    from importlib.metadata import entry_points

    found = [ep for ep in entry_points(group=ENGINE_GROUP) if ep.name == name]
    if not found:
        raise UserError(f"inference.engine={name} needs the automl package (Ray Data); it is not installed")
    return found[0].load()


def infer(spec: ExperimentSpec) -> dict[str, Any]:
    """Label every input box: the input json with `annotations` replaced, one mask per box, same ids."""
    inf = spec.inference
    coco = load_coco(inf.ann_path, inf.img_dir, check_images=True)
    engine = _engine(inf.engine)
    # a registered model is fetched once, here, and every worker reads the same file
    spec = with_values(spec, {"inference.checkpoint": ckpt.resolve(inf.checkpoint)})
    units = label_units(coco, inf.batch_size, with_masks=inf.load_mask)
    start = time.perf_counter()
    annotations, workers = engine(spec, units)
    results = {ann["id"]: ann for ann in annotations}
    seconds = time.perf_counter() - start
    missing = [a["id"] for a in coco.anns if a["id"] not in results]
    if missing:  # an engine fault, never a user's: writing a file without these boxes would break the contract
        raise RuntimeError(f"inference engine {inf.engine} returned no annotation for {len(missing)} boxes, e.g. id {missing[0]}")
    output = dict(coco.raw)
    output["annotations"] = [results[a["id"]] for a in coco.anns]  # input order, every box
    path = Path(inf.label_dump_path)
    if not path.is_absolute():
        path = spec.output_dir("inference") / path
    write_json(output, path)
    empty = sum(1 for ann in results.values() if ann["area"] == 0)
    if empty:
        log.warning("%d of %d boxes got an empty mask (too small or low confidence); they are written all the same", empty, len(results))
    images = len({ann["image_id"] for ann in coco.anns})
    return {
        "path": path,
        "annotations": len(results),
        "images": images,
        "empty": empty,
        "seconds": seconds,
        "boxes_per_s": len(results) / seconds,
        "images_per_s": images / seconds,
        "workers": workers,
    }


def export_weights(checkpoint_path: str | Path) -> dict[str, torch.Tensor]:
    """The weights-only state dict (student.* and teacher.*) of a training checkpoint, for promotion."""
    return ckpt.network_state(ckpt.load(checkpoint_path))
