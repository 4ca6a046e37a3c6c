"""The parts of the GPU check, each run in a process of its own: throughput figures (bench.throughput's
measurements at the GPU's sizes) and MAL's GPU paths (`mal train` and its resume, evaluate and inference
against the CPU, DDP, fractional-GPU trials).

`python -m bench.gpu_parts PART WORK` runs one part in the context the check wrote to WORK/context.json and
writes WORK/parts/PART.json: its figures with a one-line summary, and the error that stopped it or what
it found wrong (a part that checks something returns `problems` with its figures). Without a
GPU the same parts run at CPU sizes, so every code path here runs in the suite.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, bin_path, quiet_lightning, run_logged
from bench.gpu_mask2former import train_mask2former

CONTEXT_FILE = "context.json"
PARTS_DIR = "parts"
LOGS_DIR = "logs"
DEMO_SPEC = ROOT / "experiments" / "mal_demo.yaml"



@dataclass(frozen=True)
class Agreement:
    """When two label files of one checkpoint agree: at least `boxes` of the boxes have masks with IoU at least
    `iou`, or at most `pixels` of the box's pixels (one at least) told apart, since on a small mask two
    flipped boundary pixels already cost more IoU than on a large one."""

    iou: float
    pixels: float
    boxes: float

    def __str__(self) -> str:
        return f"{self.boxes:.0%} of boxes at IoU >= {self.iou} or <= {self.pixels:.0%} of the box's pixels apart"


# Against the CPU's fp32 masks. fp32 on the GPU is the same arithmetic in another order (cuDNN's TF32
# convolutions, other reduction orders): only pixels within rounding of the threshold may flip. bf16 keeps 8
# bits of mantissa in the network, which moves a soft boundary by a fraction of a pixel.
AGREEMENT = {"gpu_fp32": Agreement(0.99, 0.01, 0.98), "gpu_bf16": Agreement(0.95, 0.05, 0.95)}
MIOU_TOLERANCE = 0.005  # |mIoU of the bf16 GPU run - mIoU of the CPU run| of one checkpoint

VIT_BASE_512 = ["model.arch=vit-mae-base/16", "dataset.crop_size=512", "dataset.min_obj_size=1024"]
EFFNET_512 = ["model.arch=efficientnet-lite0", "dataset.crop_size=512", "dataset.min_obj_size=1024"]
# CPU sizes: every part in seconds on 2 cores
SMALL_HEAD = ["model.mask_head_hidden_channel=16", "model.mask_head_out_channel=16", "train.crf_num_iter=5"]
VIT_MICRO_32 = ["model.arch=vit-micro/8", "dataset.crop_size=32", "dataset.min_obj_size=64", *SMALL_HEAD]
EFFNET_64 = ["model.arch=efficientnet-lite0", "dataset.crop_size=64", "dataset.min_obj_size=64", *SMALL_HEAD]
# the demo's 80 largest boxes: 10 steps an epoch
CPU_TRAINING = [*VIT_MICRO_32, "dataset.min_obj_size=6000", "train.loss_mil_step=4", "train.loss_crf_step=8",
                "evaluate.batch_size=16", "inference.batch_size=16", "train.num_gpus=0"]


def sizes(gpu: bool) -> dict[str, dict[str, Any]]:
    """Each part's fixed amount of work: the GPU's (the figures that count) or the CPU's (the same code, small)."""
    if gpu:
        return {
            "train_vit": {"model": VIT_BASE_512, "photos": True, "batch": 64, "warmup": 3, "iters": 10, "precision": "bf16-mixed"},
            "train_effnet": {"model": EFFNET_512, "photos": True, "batch": 64, "warmup": 3, "iters": 10, "precision": "bf16-mixed"},
            "infer_sweep": {"model": VIT_BASE_512, "photos": True, "batches": [32, 64, 128, 256], "crops": 1024, "autocast": True},
            "data_loader": {"crops": 200, "demo_crops": 300},
            "train_resume": {"overrides": ["train.num_gpus=1", "dataset.num_workers_per_gpu=4"], "epochs": 6, "resume_epochs": 8},
            "ddp": {"overrides": ["train.num_gpus=2", "dataset.num_workers_per_gpu=4"], "epochs": 2},
            "ray_trials": {"trials": 4, "gpus_per_trial": 0.25, "cpus_per_trial": 2, "epochs": 2},
        }
    return {
        "train_vit": {"model": VIT_MICRO_32, "photos": False, "batch": 4, "warmup": 1, "iters": 2, "precision": "32-true"},
        "train_effnet": {"model": EFFNET_64, "photos": False, "batch": 2, "warmup": 1, "iters": 2, "precision": "32-true"},
        "infer_sweep": {"model": VIT_MICRO_32, "photos": False, "batches": [4, 8], "crops": 16, "autocast": False},
        "data_loader": {"crops": 30, "demo_crops": 50},
        "train_resume": {"overrides": CPU_TRAINING, "epochs": 1, "resume_epochs": 2},
    }


class CheckFailed(Exception):
    """What a part compares cannot be compared; the message says why."""


@dataclass
class Context:
    """What every part is given: its work folder, the data, the GPUs."""

    work: Path
    demo: Path  # `mal demo-data` output
    photos: Path | None  # coco128-seg, when the machine has it
    gpus: int

    @classmethod
    def read(cls, work: Path) -> Context:
        raw = json.loads((work / CONTEXT_FILE).read_text())
        return cls(work, Path(raw["demo"]), Path(raw["photos"]) if raw["photos"] else None, raw["gpus"])

    def write(self) -> None:
        doc = {"demo": str(self.demo), "photos": str(self.photos) if self.photos else None, "gpus": self.gpus}
        (self.work / CONTEXT_FILE).write_text(json.dumps(doc))

    @property
    def gpu(self) -> bool:
        return self.gpus > 0

    def size(self, part: str) -> dict[str, Any]:
        return sizes(self.gpu)[part]

    def data_args(self, photos: bool) -> tuple[str, list[str]]:
        """(name, dataset overrides): coco128-seg's photos when asked for and present, else the demo set."""
        if photos and self.photos:
            ann, images = self.photos / "annotations", self.photos / "images"
            return "coco128-seg", [f"dataset.train_ann_path={ann / 'train.json'}", f"dataset.train_img_dir={images}",
                                   f"dataset.val_ann_path={ann / 'val.json'}", f"dataset.val_img_dir={images}"]
        return "demo", [f"dataset.{split}_{kind}={self.demo / split / name}" for split in ("train", "val")
                        for kind, name in (("ann_path", "annotations.json"), ("img_dir", "images"))]

    def spec(self, photos: bool, overrides: list[str], base: Path | None = None) -> tuple[str, Any]:
        from mal.spec import load_spec

        name, data = self.data_args(photos)
        return name, load_spec(base, [*data, *overrides])

    def earlier(self, part: str) -> dict[str, Any]:
        """The figures of a part that ran before in this check."""
        return json.loads((self.work / PARTS_DIR / f"{part}.json").read_text())["figures"]

    def device(self) -> Any:
        import torch

        return torch.device("cuda" if self.gpu else "cpu")

    def run(self, part: str, step: str, cmd: list[str]) -> tuple[str, float]:
        """A command's output and seconds; its log is WORK/logs/PART-STEP.log, whose tail a failure quotes."""
        log = self.work / LOGS_DIR / f"{part}-{step}.log"
        start = time.perf_counter()
        run_logged(cmd, log)
        return log.read_text(errors="replace"), time.perf_counter() - start


def mal(*args: str) -> list[str]:
    """`mal ...` as a command: the module, so a working tree that is not installed runs it too."""
    return [sys.executable, "-m", "mal.cli", *args]


# ---------------------------------------------------------------------------------------------- throughput


def _peak_memory_gib(gpu: bool) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 1) if gpu else None


def _train_rate(ctx: Context, part: str) -> dict[str, Any]:
    import torch

    from bench import throughput

    size = ctx.size(part)
    data, spec = ctx.spec(size["photos"], size["model"])
    batch = size["batch"]
    steps = {"batch": batch, "train_warmup": size["warmup"], "train_iters": size["iters"]}
    rate, flops = throughput.train_step(spec, throughput.train_samples(spec, batch), steps, ctx.device(), size["precision"])
    tflop_per_s = flops / batch * rate / 1e12
    peak = throughput.peak_bf16(torch.cuda.get_device_name(0)) if ctx.gpu and size["precision"].startswith("bf16") else None
    mfu = tflop_per_s * 1e12 / peak if peak else None
    memory = _peak_memory_gib(ctx.gpu)
    config = f"{spec.model.arch} at {spec.dataset.crop_size} px, {size['precision']}, batch {batch}, {data}"
    return {
        "config": config,
        "train_crops_per_s": rate,
        "gflop_per_crop": flops / batch / 1e9,
        "tflop_per_s": tflop_per_s,
        "peak_bf16_tflop_per_s": peak / 1e12 if peak else None,
        "mfu": mfu,
        "peak_memory_gib": memory,
        "summary": f"{config}: {rate:.3g} crops/s, {tflop_per_s:.3g} TFLOP/s" + (f", MFU {mfu:.2f}" if mfu else "")
        + (f", {memory} GiB" if memory is not None else ""),
    }


def train_vit(ctx: Context) -> dict[str, Any]:
    return _train_rate(ctx, "train_vit")


def train_effnet(ctx: Context) -> dict[str, Any]:
    return _train_rate(ctx, "train_effnet")


def infer_sweep(ctx: Context) -> dict[str, Any]:
    """Masks/s of labelling at each batch size, every size labelling the same prepared crops."""
    import torch

    from bench import throughput
    from mal.module import MALModule

    size = ctx.size("infer_sweep")
    data, spec = ctx.spec(size["photos"], size["model"])
    largest = max(size["batches"])
    prepared = throughput.eval_batches(spec, largest, size["crops"] // largest)
    crops = {key: torch.cat([b[key] for b in prepared]) for key in prepared[0]}
    count = len(crops["image"])
    module = MALModule(spec).eval().to(ctx.device())
    rates = {}
    for batch in size["batches"]:
        chunks = [{key: value[i : i + batch] for key, value in crops.items()} for i in range(0, count, batch)]
        rates[batch] = throughput.infer_masks_per_s(module, chunks, 1, ctx.device(), autocast=size["autocast"])
    best = max(rates, key=rates.get)
    precision = "bf16 autocast" if size["autocast"] else "fp32"
    config = f"{spec.model.arch} at {spec.dataset.crop_size} px, {precision}, {count} crops per batch size, {data}"
    return {
        "config": config,
        "masks_per_s": rates,
        "best_batch": best,
        "best_masks_per_s": rates[best],
        "peak_memory_gib": _peak_memory_gib(ctx.gpu),
        "summary": f"{config}: " + ", ".join(f"{rate:.3g} at batch {batch}" for batch, rate in rates.items()) + " masks/s",
    }


def data_loader(ctx: Context) -> dict[str, Any]:
    """Training crops/s of one data-loader worker at train_vit's data and crops (how many workers keep its
    rate fed), and at the demo's."""
    import os

    from bench import throughput

    size, trained = ctx.size("data_loader"), ctx.size("train_vit")
    data, spec = ctx.spec(trained["photos"], trained["model"])
    _, demo = ctx.spec(False, [], base=DEMO_SPEC)
    rates = {
        f"{spec.model.arch} at {spec.dataset.crop_size} px, {data}": throughput.data_pipeline(spec, size["crops"]),
        f"demo ({demo.model.arch} at {demo.dataset.crop_size} px)": throughput.data_pipeline(demo, size["demo_crops"]),
    }
    first = next(iter(rates.values()))
    return {
        "crops_per_s_per_worker": rates,
        "crop_size": spec.dataset.crop_size,
        "per_worker_at_crop": first,
        "cpu_cores": len(os.sched_getaffinity(0)),
        "summary": ", ".join(f"{rate:.3g} ({name.split(',')[0]})" for name, rate in rates.items()) + " crops/s per worker",
    }


# ---------------------------------------------------------------------------------------------- MAL's GPU paths


def _demo_overrides(ctx: Context, out: Path, overrides: list[str]) -> list[str]:
    """experiments/mal_demo.yaml's overrides for a part: the demo data, the output folder, the part's own."""
    return [*ctx.data_args(False)[1], f"results_dir={out}", *overrides]


def _demo_spec(overrides: list[str]) -> Any:
    from mal.spec import load_spec

    return load_spec(DEMO_SPEC, overrides)


def demo_data(ctx: Context) -> dict[str, Any]:
    ctx.run("demo_data", "mal", mal("demo-data", str(ctx.demo)))
    boxes = {split: len(json.loads((ctx.demo / split / "annotations.json").read_text())["annotations"])
             for split in ("train", "val")}
    return {"folder": str(ctx.demo), "boxes": boxes, "summary": f"{boxes['train']} train and {boxes['val']} val boxes"}


def _checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _losses(train_dir: Path) -> list[float]:
    """Every training loss the run's CSV log holds (bf16 trouble shows as NaN or inf here first)."""
    with (train_dir / "logs" / "metrics.csv").open() as f:
        return [float(row["loss"]) for row in csv.DictReader(f) if row.get("loss")]


def _best_miou(output: str) -> float:
    found = re.search(r"best mIoU (\S+);", output)
    return float(found[1]) if found else float("nan")


def _training_problems(losses: list[float], output: str) -> list[str]:
    """What bf16 trouble looks like in a finished run: losses or the best validation score not finite."""
    problems = []
    bad = sum(not math.isfinite(v) for v in losses)
    if bad:
        problems.append(f"{bad} of {len(losses)} logged losses are NaN or inf")
    if not math.isfinite(_best_miou(output)):
        problems.append("no finite best mIoU")
    return problems


def train_resume(ctx: Context) -> dict[str, Any]:
    """`mal train`, then `mal train` again with more epochs: it must go on from the checkpoint it left."""
    from mal.names import BEST_FILE, EPOCH_TEMPLATE, LATEST_FILE
    from plumbing.devices import precision, use_gpu

    size = ctx.size("train_resume")
    out = ctx.work / "train_resume"
    overrides = _demo_overrides(ctx, out, size["overrides"])
    args = ["-e", str(DEMO_SPEC), *overrides]
    first, resumed = size["epochs"], size["resume_epochs"]
    spec = _demo_spec(overrides)
    train_dir = out / "train"

    output, seconds = ctx.run("train_resume", "first", mal("train", *args, f"train.num_epochs={first}"))
    before = _checkpoint(train_dir / LATEST_FILE)
    kept = {p.name: _digest(p) for p in train_dir.glob("model_epoch_*.pth")}
    losses = _losses(train_dir)
    resumed_output, resume_seconds = ctx.run("train_resume", "resume", mal("train", *args, f"train.num_epochs={resumed}"))
    after = _checkpoint(train_dir / LATEST_FILE)
    losses += _losses(train_dir)

    steps_per_epoch = before["global_step"] // first
    problems = _training_problems(losses, resumed_output)
    if any(_digest(train_dir / name) != digest for name, digest in kept.items()):
        problems.append("the resumed run rewrote the first run's epoch checkpoints")
    if after["global_step"] != resumed * steps_per_epoch:
        problems.append(f"global step {after['global_step']} after resuming, expected {resumed * steps_per_epoch}")
    for epoch in range(first, resumed):
        if not (train_dir / f"{EPOCH_TEMPLATE.format(epoch=epoch)}.pth").is_file():
            problems.append(f"no checkpoint of epoch {epoch} after resuming")
    gpu = use_gpu(spec.train.num_gpus)
    return {
        "problems": problems,
        "device": "cuda" if gpu else "cpu",
        "precision": precision(spec.train.use_amp, gpu),
        "config": f"{spec.model.arch} at {spec.dataset.crop_size} px, batch {spec.train.batch_size}, "
                  f"{spec.dataset.num_workers_per_gpu} loader workers, demo",
        "epochs": first,
        "resumed_to": resumed,
        "steps_per_epoch": steps_per_epoch,
        "losses_logged": len(losses),
        "best_mIoU_first": _best_miou(output),
        "best_mIoU": _best_miou(resumed_output),
        "seconds_first": seconds,
        "seconds_resume": resume_seconds,
        "best_checkpoint": str(train_dir / BEST_FILE),
        "cli_args": args,
        "summary": f"{first} epochs + resumed to {resumed} on {'cuda' if gpu else 'cpu'} "
                   f"({precision(spec.train.use_amp, gpu)}), best mIoU {_best_miou(resumed_output):.3f}",
    }


def mask_agreement(reference: list[dict], other: list[dict], rule: Agreement) -> dict[str, Any]:
    """How closely two label files' masks of the same boxes agree under `rule`: per-box IoU, scores."""
    from pycocotools import mask as mask_utils

    ids, other_ids = [a["id"] for a in reference], [a["id"] for a in other]
    if ids != other_ids:
        raise CheckFailed(f"the label files hold different boxes ({len(ids)} and {len(other_ids)} annotations)")
    ious, agreeing, score_diff = [], 0, 0.0
    for a, b in zip(reference, other, strict=True):
        area_a, area_b = (float(x) for x in mask_utils.area([a["segmentation"], b["segmentation"]]))
        iou = float(mask_utils.iou([b["segmentation"]], [a["segmentation"]], [0])[0][0]) if area_a + area_b else 1.0
        inter = iou * (area_a + area_b) / (1 + iou)
        told_apart = area_a + area_b - 2 * inter
        box_area = a["bbox"][2] * a["bbox"][3]
        agreeing += int(iou >= rule.iou or told_apart <= max(1.0, rule.pixels * box_area) + 1e-6)
        ious.append(iou)
        score_diff = max(score_diff, abs(a["score"] - b["score"]))
    ious.sort()
    fraction = agreeing / len(ious) if ious else 1.0
    return {
        "boxes": len(ious),
        "agreeing": agreeing,
        "fraction": fraction,
        "agree": fraction >= rule.boxes,
        "rule": str(rule),
        "min_iou": ious[0] if ious else None,
        "median_iou": ious[len(ious) // 2] if ious else None,
        "max_score_diff": score_diff,
    }


def eval_infer(ctx: Context) -> dict[str, Any]:
    """`mal evaluate` and `mal inference` of the trained checkpoint on the GPU (bf16, and fp32 to tell bf16
    from the device) and on the CPU; the GPU's masks must agree with the CPU's."""
    trained = ctx.earlier("train_resume")
    checkpoint, args = trained["best_checkpoint"], trained["cli_args"]
    val = ctx.demo / "val"
    out = ctx.work / "eval_infer"
    runs = {"cpu": (0, False), **({"gpu_bf16": (1, True), "gpu_fp32": (1, False)} if ctx.gpu else {})}
    metrics, labels, seconds = {}, {}, {}
    for name, (gpus, amp) in runs.items():
        device = [f"train.use_amp={str(amp).lower()}"]
        if name != "gpu_fp32":
            folder = out / name / "evaluate"
            _, seconds[f"evaluate_{name}"] = ctx.run("eval_infer", f"evaluate-{name}", mal(
                "evaluate", *args, *device, f"evaluate.checkpoint={checkpoint}", f"evaluate.num_gpus={gpus}",
                f"evaluate.results_dir={folder}"))
            metrics[name] = json.loads((folder / "metrics.json").read_text())
        dump = out / name / "labels.json"
        _, seconds[f"inference_{name}"] = ctx.run("eval_infer", f"inference-{name}", mal(
            "inference", *args, *device, f"inference.checkpoint={checkpoint}", f"inference.num_gpus={gpus}",
            f"inference.ann_path={val / 'annotations.json'}", f"inference.img_dir={val / 'images'}",
            f"inference.label_dump_path={dump}"))
        labels[name] = json.loads(dump.read_text())["annotations"]
    figures: dict[str, Any] = {
        "mIoU": {name: m["mIoU"] for name, m in metrics.items()},
        "mask_AP": {name: m["mask_AP"] for name, m in metrics.items()},
        "boxes_labelled": {name: len(anns) for name, anns in labels.items()},
        "seconds": seconds,
    }
    if not ctx.gpu:
        figures["summary"] = f"CPU only: mIoU {metrics['cpu']['mIoU']:.3f}, {len(labels['cpu'])} boxes labelled"
        return figures
    figures["agreement"] = {name: mask_agreement(labels["cpu"], labels[name], rule) for name, rule in AGREEMENT.items()}
    figures["mIoU_difference"] = abs(metrics["gpu_bf16"]["mIoU"] - metrics["cpu"]["mIoU"])
    figures["problems"] = [
        f"{name}: {a['agreeing']} of {a['boxes']} boxes agree with the CPU, {a['rule']} needed (min IoU {a['min_iou']:.3f})"
        for name, a in figures["agreement"].items() if not a["agree"]]
    if figures["mIoU_difference"] > MIOU_TOLERANCE:
        figures["problems"].append(f"mIoU {metrics['gpu_bf16']['mIoU']:.4f} on the GPU, {metrics['cpu']['mIoU']:.4f} "
                                   f"on the CPU: more than {MIOU_TOLERANCE} apart")
    figures["summary"] = ", ".join(
        f"{name} vs cpu: {a['agreeing']}/{a['boxes']} boxes, median IoU {a['median_iou']:.4f}"
        for name, a in figures["agreement"].items()) + f"; |dmIoU| {figures['mIoU_difference']:.4f}"
    return figures


def ddp(ctx: Context) -> dict[str, Any]:
    """`mal train` on 2 GPUs: each rank trains half of every epoch (the global step says so)."""
    from mal.data import train_instances
    from mal.names import LATEST_FILE
    from plumbing.coco import load_coco

    size = ctx.size("ddp")
    out = ctx.work / "ddp"
    overrides = _demo_overrides(ctx, out, [*size["overrides"], f"train.num_epochs={size['epochs']}"])
    spec = _demo_spec(overrides)
    output, seconds = ctx.run("ddp", "train", mal("train", "-e", str(DEMO_SPEC), *overrides))
    d = spec.dataset
    boxes, _ = train_instances(load_coco(d.train_ann_path), d.min_obj_size, d.max_obj_size)
    world = spec.train.num_gpus
    expected = size["epochs"] * math.ceil(math.ceil(len(boxes) / world) / spec.train.batch_size)
    step = _checkpoint(out / "train" / LATEST_FILE)["global_step"]
    problems = _training_problems(_losses(out / "train"), output)
    if step != expected:
        problems.append(f"global step {step}, expected {expected} for {world} ranks")
    return {"problems": problems, "gpus": world, "epochs": size["epochs"], "global_step": step, "seconds": seconds,
            "best_mIoU": _best_miou(output),
            "summary": f"{world} GPUs, {size['epochs']} epochs in {seconds:.0f} s, global step {step}"}


def ray_trials(ctx: Context) -> dict[str, Any]:
    """`automl run` of 4 demo trials sharing the GPU through Ray's fractional placement."""
    size = ctx.size("ray_trials")
    out = ctx.work / "study"
    cmd = [bin_path("automl"), "run", "--model", "mal", "-e", str(DEMO_SPEC), *_demo_overrides(ctx, out, [
        f"automl.max_trials={size['trials']}", f"automl.max_concurrent={size['trials']}",
        f"automl.gpus_per_trial={size['gpus_per_trial']}", f"automl.cpus_per_trial={size['cpus_per_trial']}",
        f"automl.max_epochs={size['epochs']}", "automl.grace_period=1", "train.num_gpus=1",
        "dataset.num_workers_per_gpu=0", f"automl.tracking_uri=sqlite:///{ctx.work / 'mlflow.db'}",
    ])]
    _, seconds = ctx.run("ray_trials", "study", cmd)
    records = json.loads((out / "study.json").read_text())["records"]
    finished = [r for r in records if r["status"] in ("COMPLETED", "STOPPED")]
    problems = [] if len(finished) == size["trials"] else [
        f"{len(finished)} of {size['trials']} trials finished: "
        + ", ".join(f"{r['trial_id']} {r['status']} {r['error']}".strip() for r in records)]
    best = max((r["best_metric"] for r in finished), default=float("nan"))
    return {"problems": problems, "trials": len(finished), "gpus_per_trial": size["gpus_per_trial"], "seconds": seconds, "best_mIoU": best,
            "summary": f"{len(finished)} trials at {size['gpus_per_trial']} GPU each in {seconds:.0f} s, best mIoU {best:.3f}"}


RUNS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "demo_data": demo_data,
    "train_vit": train_vit,
    "infer_sweep": infer_sweep,
    "train_resume": train_resume,
    "eval_infer": eval_infer,
    "train_effnet": train_effnet,
    "train_m2f": train_mask2former,
    "data_loader": data_loader,
    "ddp": ddp,
    "ray_trials": ray_trials,
}


def run_part(name: str, work: Path) -> int:
    """Run one part; its outcome goes to WORK/parts/NAME.json either way, the traceback to this process's output."""
    quiet_lightning()
    result_file = work / PARTS_DIR / f"{name}.json"
    result_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        figures = RUNS[name](Context.read(work))
        problems = figures.pop("problems", [])
        outcome: dict[str, Any] = {"figures": figures, **({"error": "; ".join(problems)} if problems else {})}
    except Exception as exc:  # noqa: BLE001 - the check reports every part's failure and goes on with the next
        traceback.print_exc()
        # a failed command's error is its first line and, last, the line its own output ended on
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
        outcome = {"error": f"{type(exc).__name__}: {lines[0]}" + (f" ... {lines[-1]}" if len(lines) > 1 else "")}
    result_file.write_text(json.dumps(outcome, default=str))
    return 1 if "error" in outcome else 0


if __name__ == "__main__":
    raise SystemExit(run_part(sys.argv[1], Path(sys.argv[2])))
