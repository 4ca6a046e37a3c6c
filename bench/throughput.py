"""Benchmark 3, throughput: how fast MAL trains, labels and feeds itself.

For two configurations, the CPU demo (experiments/mal_demo.yaml on the synthetic set) and vit-mae-base/16 at
crop 512 (the paper's size, random init, on coco128-seg photos):
- training crops/s: the real MALModule step (student + teacher, MIL + CRF losses, backward, AdamW, EMA)
  inside a Lightning Trainer, timed per batch after a warm-up; batches are prepared ahead;
- inference masks/s: predict_logits + paste-back into the image + COCO RLE, on prepared eval batches;
- data-pipeline crops/s per worker: the training dataset's __getitem__ (decode, crop, resize, augment) in
  one process with one thread, as in a data-loader worker;
- CRF ms per batch: the mean-field pseudo-labels at the loss's resolution and iteration count.
With CUDA, training and inference are measured in fp32 and bf16 autocast, with the FLOPs of a training step
(torch's FlopCounterMode) over the GPU's bf16 dense peak as MFU.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.common import ROOT, data_dir, print_table, quiet_lightning, write_result

NAME = "throughput"
DATA = ("coco128-seg",)
# bf16 dense tensor-core peaks (FLOP/s) from the vendors' data sheets, matched against the device name
PEAK_BF16 = {"H200": 989e12, "H100 PCIe": 756e12, "H100": 989e12, "A100": 312e12}  # first match wins


def _settings(quick: bool, gpu: bool) -> dict[str, dict[str, Any]]:
    """Batch sizes and iteration counts per configuration: small on CPU, where ViT-B at 512 takes seconds a step."""
    if gpu:
        counts = {"train_warmup": 5, "train_iters": 20, "infer_warmup": 2, "infer_batches": 10, "crf_reps": 10}
        return {
            "demo": {**counts, "batch": 128, "eval_batch": 256, "data_crops": 300},
            "vit-mae-base/16@512": {**counts, "batch": 32, "eval_batch": 64, "data_crops": 100},
        }
    return {
        "demo": {"batch": 8, "eval_batch": 32, "train_warmup": 1 if quick else 3, "train_iters": 3 if quick else 20,
                 "infer_warmup": 1, "infer_batches": 2 if quick else 5, "crf_reps": 3 if quick else 10,
                 "data_crops": 100 if quick else 300},
        "vit-mae-base/16@512": {"batch": 1 if quick else 2, "eval_batch": 2 if quick else 4, "train_warmup": 1,
                                "train_iters": 1 if quick else 3, "infer_warmup": 0 if quick else 1,
                                "infer_batches": 1 if quick else 3, "crf_reps": 1 if quick else 3,
                                "data_crops": 10 if quick else 100},
    }


def _specs(demo_dir: Path) -> dict[str, Any]:
    from mal.spec import load_spec

    coco = data_dir() / "coco128-seg"
    demo = load_spec(ROOT / "experiments" / "mal_demo.yaml", [
        f"dataset.train_ann_path={demo_dir / 'train' / 'annotations.json'}",
        f"dataset.train_img_dir={demo_dir / 'train' / 'images'}",
        f"dataset.val_ann_path={demo_dir / 'val' / 'annotations.json'}",
        f"dataset.val_img_dir={demo_dir / 'val' / 'images'}",
    ])
    base = load_spec(None, [  # TAO's defaults: mask head 256 wide, CRF 100 iterations
        f"dataset.train_ann_path={coco / 'annotations' / 'train.json'}",
        f"dataset.train_img_dir={coco / 'images'}",
        f"dataset.val_ann_path={coco / 'annotations' / 'val.json'}",
        f"dataset.val_img_dir={coco / 'images'}",
        "model.arch=vit-mae-base/16",
        "dataset.crop_size=512",
        "dataset.min_obj_size=1024",
    ])
    return {"demo": demo, "vit-mae-base/16@512": base}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def data_pipeline(spec: Any, crops: int) -> float:
    """Training crops/s of one worker: the dataset's own __getitem__, one thread, in training order."""
    from mal.data import MALTrainDataset, train_instances
    from plumbing.coco import load_coco

    d = spec.dataset
    coco = load_coco(d.train_ann_path, d.train_img_dir)
    instances, _ = train_instances(coco, d.min_obj_size, d.max_obj_size)
    dataset = MALTrainDataset(coco, instances, d.crop_size, spec.train.margin_rate, spec.train.seed)
    order = np.random.default_rng(0).permutation(len(dataset))
    indices = [int(order[i % len(order)]) for i in range(crops)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        start = time.perf_counter()
        for i in indices:
            dataset[i]
        return crops / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def train_samples(spec: Any, count: int) -> list[dict[str, torch.Tensor]]:
    from mal.data import MALTrainDataset, train_instances
    from plumbing.coco import load_coco

    d = spec.dataset
    coco = load_coco(d.train_ann_path, d.train_img_dir)
    instances, _ = train_instances(coco, d.min_obj_size, d.max_obj_size)
    dataset = MALTrainDataset(coco, instances, d.crop_size, spec.train.margin_rate, spec.train.seed)
    return [dataset[i % len(dataset)] for i in range(count)]


def eval_batches(spec: Any, batch: int, count: int) -> list[dict[str, torch.Tensor]]:
    from mal.data import MALEvalDataset, collate, eval_instances
    from plumbing.coco import load_coco

    coco = load_coco(spec.dataset.val_ann_path, spec.dataset.val_img_dir)
    dataset = MALEvalDataset(coco, eval_instances(coco), spec.dataset.crop_size, spec.train.test_margin_rate)
    # a val set smaller than the batches is cycled, so every batch is full (a short one would time less work)
    cycled = torch.utils.data.Subset(dataset, [i % len(dataset) for i in range(batch * count)])
    return list(torch.utils.data.DataLoader(cycled, batch_size=batch, shuffle=False, collate_fn=collate))


def crf_ms(spec: Any, samples: list[dict[str, torch.Tensor]], batch: int, reps: int, device: torch.device) -> float:
    """Milliseconds of the CRF pseudo-labels for one batch, at the loss's resolution and iteration count."""
    import torch.nn.functional as F

    from mal.losses import mean_field_pseudo_labels

    t = spec.train
    size = (max(1, round(_output_size(spec) * t.crf_size_ratio)),) * 2
    image = torch.stack([s["image"] for s in samples[:batch]]).to(device)
    box = torch.stack([s["boxmask"] for s in samples[:batch]]).to(device)
    image, box = F.interpolate(image, size=size, mode="bilinear"), F.interpolate(box, size=size, mode="bilinear")
    probs = torch.rand(box.shape, generator=torch.Generator().manual_seed(0)).to(device)

    def once() -> None:
        mean_field_pseudo_labels(image, probs, box, t.crf_kernel_size, t.crf_zeta, t.crf_num_iter,
                                 t.crf_value_low_thres, t.crf_value_high_thres)

    once()
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        once()
    _sync(device)
    return (time.perf_counter() - start) / reps * 1000


def _output_size(spec: Any) -> int:
    """The mask logits' side: 4 x the token grid (mal.model.MALNet)."""
    from mal.archs import ARCHS

    return 4 * (spec.dataset.crop_size // ARCHS[spec.model.arch].stride)


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, samples: list[dict[str, torch.Tensor]], length: int) -> None:
        self.samples, self.length = samples, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.samples[i % len(self.samples)]


def _batch_clock(device: torch.device, warmup: int) -> Any:
    from lightning.pytorch.callbacks import Callback
    from torch.utils.flop_counter import FlopCounterMode

    class BatchClock(Callback):
        """Seconds of each training batch after the warm-up (step, backward, optimizer, EMA); the first
        warm-up batch is run under FlopCounterMode, so counting costs no extra step and no timed one."""

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.counter = FlopCounterMode(display=False)
            self.flops = 0

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                self.counter.__enter__()
            _sync(device)
            self._start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            _sync(device)
            if batch_idx >= warmup:
                self.seconds.append(time.perf_counter() - self._start)
            if batch_idx == 0:
                self.counter.__exit__(None, None, None)
                self.flops = self.counter.get_total_flops()

    return BatchClock()


def train_step(spec: Any, samples: list, s: dict[str, int], device: torch.device, precision: str) -> tuple[float, int]:
    """Crops/s of the real training step in a Lightning Trainer (prepared batches: no data time), and the
    model FLOPs of one step (forward, backward; the CRF's elementwise work is not counted, as MFU does).
    The network starts from the weights `mal train` would load (an encoder's packaged ImageNet weights)."""
    import lightning as L

    from mal.data import collate
    from mal.module import MALModule
    from mal.pretrained import load_pretrained

    steps = s["train_warmup"] + s["train_iters"]
    loader = torch.utils.data.DataLoader(_Repeat(samples, steps * s["batch"]), batch_size=s["batch"], collate_fn=collate)
    clock = _batch_clock(device, s["train_warmup"])
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=precision, max_steps=steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[clock],
    )
    module = MALModule(spec, None, steps_per_epoch=steps)
    load_pretrained(module.net, spec.train.pretrained_model_path, spec.model.arch)
    trainer.fit(module, loader)
    return s["batch"] * len(clock.seconds) / sum(clock.seconds), clock.flops


def infer_masks_per_s(module: Any, batches: list, warmup: int, device: torch.device, autocast: bool) -> float:
    """Masks/s of labelling: network, paste-back into the image, COCO RLE (batches prepared ahead)."""
    from mal.predict import paste_masks, thresholds_by_bucket

    thresholds = thresholds_by_bucket(module.spec.train.mask_thres)

    def label(batch: dict[str, torch.Tensor]) -> int:
        on_device = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            masks = paste_masks(module.predict_logits(on_device), batch, thresholds)
        return len([m.rle() for m in masks])

    for batch in batches[:warmup]:
        label(batch)
    start = time.perf_counter()
    done = sum(label(batch) for batch in batches[warmup:])
    return done / (time.perf_counter() - start)


def _measure(name: str, spec: Any, s: dict[str, int], device: torch.device) -> dict[str, Any]:
    from mal.module import MALModule

    gpu = device.type == "cuda"
    samples = train_samples(spec, max(s["batch"], min(64, s["batch"] * 2)))
    batches = eval_batches(spec, s["eval_batch"], s["infer_warmup"] + s["infer_batches"])
    labeller = MALModule(spec).eval().to(device)
    row: dict[str, Any] = {
        "batch": s["batch"],
        "eval_batch": s["eval_batch"],
        "data_crops_per_s_per_worker": data_pipeline(spec, s["data_crops"]),
        "crf_ms_per_batch": crf_ms(spec, samples, s["batch"], s["crf_reps"], device),
        "infer_masks_per_s": infer_masks_per_s(labeller, batches, s["infer_warmup"], device, autocast=False),
    }
    row["train_crops_per_s"], flops = train_step(spec, samples, s, device, "32-true")
    row["train_gflop_per_crop"] = flops / s["batch"] / 1e9
    row["train_tflop_per_s"] = flops / s["batch"] * row["train_crops_per_s"] / 1e12
    if gpu:
        row["train_crops_per_s_bf16"], _ = train_step(spec, samples, s, device, "bf16-mixed")
        row["infer_masks_per_s_bf16"] = infer_masks_per_s(labeller, batches, s["infer_warmup"], device, autocast=True)
        row["train_tflop_per_s_bf16"] = flops / s["batch"] * row["train_crops_per_s_bf16"] / 1e12
        peak = peak_bf16(torch.cuda.get_device_name(0))
        row["mfu_bf16"] = row["train_tflop_per_s_bf16"] * 1e12 / peak if peak else None
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def peak_bf16(device_name: str) -> float | None:
    """The data sheet's dense bf16 FLOP/s of a GPU by its name; None for one not in PEAK_BF16."""
    return next((peak for key, peak in PEAK_BF16.items() if key in device_name), None)


def run(quick: bool) -> None:
    from mal.synthetic import write_demo_dataset

    quiet_lightning()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = _settings(quick, device.type == "cuda")
    folder = Path(tempfile.mkdtemp(prefix="bench-throughput-"))
    try:
        write_demo_dataset(folder / "demo", seed=0)
        specs = _specs(folder / "demo")
        results = {name: _measure(name, spec, settings[name], device) for name, spec in specs.items()}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    columns: list[tuple[str, Callable[[dict], Any]]] = [
        ("config", lambda r: r["name"]),
        ("train crops/s", lambda r: r["train_crops_per_s"]),
        ("infer masks/s", lambda r: r["infer_masks_per_s"]),
        ("data crops/s/worker", lambda r: r["data_crops_per_s_per_worker"]),
        ("CRF ms/batch", lambda r: r["crf_ms_per_batch"]),
        ("batch", lambda r: r["batch"]),
        ("GFLOP/crop (train)", lambda r: r["train_gflop_per_crop"]),
        ("TFLOP/s (train)", lambda r: r["train_tflop_per_s"]),
    ]
    if device.type == "cuda":
        columns += [
            ("bf16 train crops/s", lambda r: r["train_crops_per_s_bf16"]),
            ("bf16 infer masks/s", lambda r: r["infer_masks_per_s_bf16"]),
            ("MFU bf16", lambda r: r["mfu_bf16"]),
        ]
    rows = [[get({"name": name, **r}) for _, get in columns] for name, r in results.items()]
    print_table(f"throughput on {'GPU ' + torch.cuda.get_device_name(0) if device.type == 'cuda' else 'CPU'}"
                f"{' [quick]' if quick else ''}", [c for c, _ in columns], rows)
    write_result(NAME, {"device": str(device), "torch_threads": torch.get_num_threads(), "per_config": settings}, results, quick)
