"""Benchmark: what points and scribbles buy over boxes alone, on coco128-seg val.

Clicks are simulated from the ground-truth masks, with a protocol fixed before any figure was seen:
- **points**: each instance gets one sequence of 10 clicks from `default_rng([SEED, annotation id])`;
  "box + k" uses its first k. Clicks alternate object, background, object, ... starting with an object one.
  Object clicks are drawn uniformly without replacement from the mask's pixels inside the box, background
  clicks from the box's pixels outside the mask; when one kind runs out the other goes on. A click is
  the pixel's centre (column + 0.5, row + 0.5).
- **scribbles**: one polyline per instance, along the longest path inside the mask's core: the largest
  8-connected part of the pixels at least a quarter of the mask's largest inner distance from its edge
  (`cv2.distanceTransform`). From a core pixel drawn by `default_rng([SEED, annotation id, 1])`, the
  farthest core pixel A (in 8-neighbour steps inside the core), then the one farthest from A, B; the
  path from B to A, simplified to within 1 px (`cv2.approxPolyDP`), is the scribble: a stroke along the
  object's main extent, as a person draws one. "Scribbles alone" removes the bbox: the box is derived from
  the scribble (plumbing.coco_prompts.PROMPT_BOX_MARGIN), and this benchmark reports how well that box fits,
  per margin.
- **corrective clicks**: the pass a labelling team makes over masks it sees, as interactive segmentation is
  scored (Xu et al., CVPR 2016; the NoC protocol of RITM, Sofiiuk et al., 2022): each round, every box gets
  one click at the pixel deepest inside the largest error region (8-connected misses or spills, inside the
  box; `cv2.distanceTransform`), labelled with the truth there, and the masks are made again
  with every click so far. Each way of reading the clicks gets its own pass, since its masks decide where
  the next click goes. Only at inference time: the clicks depend on the model's masks.
- Crowd instances and those without a mask get no prompt (and are not scored).

Two uses, measured apart, then together:
- **inference time**: one model trained on boxes alone (`experiments/mal_coco128.yaml`, the last epoch) is
  given the val set's prompts (`mal evaluate` on a val json with them): as `mal inference` reads them by
  default (the mask key fitted to the prompts, evaluate.prompt_refine, then the regions of the clicks the
  mask still disagrees with turned over, evaluate.prompt_spread), with the key fit alone, and with the
  labelled pixels only forced;
- **training time**: one model per kind of prompt, trained with that kind on every coco128-seg train
  instance (masks removed from the training file), then scored on the val set's boxes alone. Trained with
  prompts, a model binarises at the threshold it chose (train.choose_mask_thres) at its one validation, which
  runs on the train boxes with their masks: the val set picks nothing;
- **both**: those models given the val prompts too.
Each figure is class-balanced mIoU (mal/metrics.py) over the 188 val instances. Beside them, the most the
random clicks could buy by any reading that sets right the error regions they land on (`click_ceiling`):
a click on a pixel the mask already has right says little.

BENCH_PROMPTS_TRAINING=0 trains the boxes-only model alone (the inference-time columns; the others null).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.common import ROOT, console, data_dir, print_table, quiet_lightning, write_result

NAME = "prompts"
DATA = ("coco128-seg",)
SPEC = ROOT / "experiments" / "mal_coco128.yaml"
SEED = 0
MAX_CLICKS = 10
SCRIBBLE_CORE, SCRIBBLE_TOLERANCE_PX = 0.25, 1.0
BOXES = "boxes only"
KINDS: dict[str, int | str | None] = {
    BOXES: None, "box + 1 point": 1, "box + 3 points": 3, "box + 10 points": 10, "scribbles alone": "scribble",
}
CORRECTIVE = {"box + 1 corrective click": 1, "box + 2 corrective clicks": 2, "box + 3 corrective clicks": 3}
# how the boxes-only model reads the prompts at inference time: the column and its evaluate.* overrides
READINGS: dict[str, tuple[str, ...]] = {
    "inference time": (),
    "inference time, key fit only": ("evaluate.prompt_spread=false",),
    "inference time, forced only": ("evaluate.prompt_refine=false", "evaluate.prompt_spread=false"),
}
COLUMNS = (*READINGS, "training time", "both")
TRAINING = os.environ.get("BENCH_PROMPTS_TRAINING", "1") != "0"  # 0: the boxes-only model alone
MARGINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)
FULL: dict[str, Any] = {"overrides": [], "images_per_set": None}
QUICK: dict[str, Any] = {"overrides": ["train.num_epochs=1", "dataset.num_workers_per_gpu=0"], "images_per_set": 3}
GOAL = 0.05  # issue 21: box + 3 points beats boxes only by at least this much mIoU


# ------------------------------------------------------------------------------------------------ simulation


def simulate_clicks(mask: np.ndarray, bbox: list[float], count: int, rng: np.random.Generator) -> list[list[float]]:
    """`count` clicks [x, y, label] inside the box, alternating object (on the mask) and background (off it)."""
    from mal.data.crops import box_pixels

    x0, y0, x1, y1 = box_pixels(bbox, mask.shape)
    inside = mask[y0:y1, x0:x1].astype(bool)
    pools = {label: rng.permutation(np.argwhere(inside == bool(label))) for label in (1, 0)}
    taken = {1: 0, 0: 0}
    clicks: list[list[float]] = []
    label = 1
    while len(clicks) < count and any(taken[k] < len(pools[k]) for k in pools):
        if taken[label] >= len(pools[label]):
            label = 1 - label
        row, col = pools[label][taken[label]]
        taken[label] += 1
        clicks.append([float(x0 + col + 0.5), float(y0 + row + 0.5), label])
        label = 1 - label
    return clicks


def error_regions(mask: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 8-connected error regions of a mask: (labels, truth value) where the labels number the misses
    (truth, not mask) and the spills (mask, not truth) apart, 0 elsewhere, and the truth value is 1 on a miss,
    0 on a spill. A miss and a spill that touch are two regions: one click says which of them it is on."""
    mask, truth = mask.astype(bool), truth.astype(bool)
    labels = np.zeros(mask.shape, np.int32)
    misses = cv2.connectedComponents((truth & ~mask).astype(np.uint8), connectivity=8)[1]
    spills = cv2.connectedComponents((mask & ~truth).astype(np.uint8), connectivity=8)[1]
    labels[misses > 0] = misses[misses > 0]
    labels[spills > 0] = spills[spills > 0] + int(misses.max())
    return labels, truth


def corrective_click(mask: np.ndarray, truth: np.ndarray) -> list[float] | None:
    """The next click [x, y, label] of a corrective pass on one box (arrays of its region; x, y in region
    pixels): the pixel deepest inside the largest error region, labelled with the truth; None if none."""
    labels, truth = error_regions(mask, truth)
    if not labels.any():
        return None
    largest = np.pad((labels == int(np.argmax(np.bincount(labels.ravel())[1:])) + 1).astype(np.uint8), 1)
    depth = cv2.distanceTransform(largest, cv2.DIST_L2, 5)[1:-1, 1:-1]  # the region's edge is its border too
    row, col = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return [float(col) + 0.5, float(row) + 0.5, int(truth[row, col])]


def mask_core(mask: np.ndarray) -> np.ndarray:
    """The pixels at least SCRIBBLE_CORE of the mask's largest inner distance from its edge (bool)."""
    padded = np.pad(mask.astype(np.uint8), 1)  # the image border is an edge too
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, 5)[1:-1, 1:-1]
    # every mask pixel is at least 1 from the edge, so a non-empty mask has a non-empty core
    return (distance > 0) & (distance >= SCRIBBLE_CORE * float(distance.max()))


def simulate_scribble(mask: np.ndarray, rng: np.random.Generator) -> list[float]:
    """One polyline [x1, y1, ...] along the longest path inside the mask's core; [] for an empty mask."""
    core = mask_core(mask)
    if not core.any():
        return []
    rows, cols = np.nonzero(core)
    y0, x0 = rows.min(), cols.min()
    part = core[y0 : rows.max() + 1, x0 : cols.max() + 1].astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(part, connectivity=8)
    part = (labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    cells = np.argwhere(part)
    start = tuple(cells[rng.integers(len(cells))])
    far = _farthest(_geodesic(part, start))
    steps = _geodesic(part, far)
    path = _descend(steps, _farthest(steps))
    vertices = cv2.approxPolyDP(np.array([[c + x0, r + y0] for r, c in path], np.float32)[:, None], SCRIBBLE_TOLERANCE_PX, False)
    return [round(float(v) + 0.5, 2) for v in vertices.reshape(-1)]


_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]


def _geodesic(region: np.ndarray, start: tuple[int, int]) -> np.ndarray:
    """Steps (8-neighbour) from `start` to every pixel of `region` (-1 outside it), by growing a front."""
    steps = np.full(region.shape, -1, np.int32)
    steps[start] = 0
    front = np.zeros_like(region)
    front[start] = 1
    seen = front.copy()
    kernel = np.ones((3, 3), np.uint8)
    step = 0
    while front.any():
        step += 1
        front = cv2.dilate(front, kernel) & region & (1 - seen)
        steps[front > 0] = step
        seen |= front
    return steps


def _farthest(steps: np.ndarray) -> tuple[int, int]:
    return tuple(int(v) for v in np.unravel_index(int(np.argmax(steps)), steps.shape))  # type: ignore[return-value]


def _descend(steps: np.ndarray, end: tuple[int, int]) -> list[tuple[int, int]]:
    """The pixels from `end` back to the start of `steps`, one step nearer each time."""
    path = [end]
    h, w = steps.shape
    while steps[path[-1]] > 0:
        r, c = path[-1]
        path.append(next((r + dr, c + dc) for dr, dc in _NEIGHBOURS
                         if 0 <= r + dr < h and 0 <= c + dc < w and steps[r + dr, c + dc] == steps[r, c] - 1))
    return path


def with_prompts(raw: dict, kind: int | str | None, seed: int = SEED, strip_masks: bool = False) -> dict:
    """A copy of a COCO dict whose instances carry the simulated prompts of `kind` (None: boxes only; k:
    box + k clicks; "scribble": one scribble and no bbox)."""
    from plumbing.coco import gt_mask

    sizes = {img["id"]: (img["height"], img["width"]) for img in raw["images"]}
    anns = []
    for ann in raw["annotations"]:
        ann = dict(ann)
        mask = gt_mask(ann, *sizes[ann["image_id"]]) if not ann.get("iscrowd") else None
        if kind is not None and mask is not None and mask.any():
            if kind == "scribble":
                line = simulate_scribble(mask, np.random.default_rng([seed, ann["id"], 1]))
                if line:
                    ann["scribbles"] = [line]
                    del ann["bbox"]
            else:
                clicks = simulate_clicks(mask, ann["bbox"], MAX_CLICKS, np.random.default_rng([seed, ann["id"]]))
                ann["points"] = clicks[:kind]
        if strip_masks:
            ann.pop("segmentation", None)
        anns.append(ann)
    return {**raw, "annotations": anns}


def box_fit(raw: dict, margins: tuple[float, ...] = MARGINS, seed: int = SEED) -> dict[str, dict[str, float]]:
    """Per margin, how well a box derived from the simulated scribble fits: mean IoU with the ground-truth
    box, and mean share of the mask's pixels inside it (a mask pixel outside the box can never be drawn)."""
    from plumbing.coco import gt_mask
    from plumbing.coco_prompts import derived_bbox

    sizes = {img["id"]: (img["height"], img["width"]) for img in raw["images"]}
    truths = {a["id"]: a["bbox"] for a in raw["annotations"]}
    fits: dict[float, list[tuple[float, float]]] = {m: [] for m in margins}
    for ann in with_prompts(raw, "scribble", seed)["annotations"]:
        if "scribbles" not in ann:
            continue
        h, w = sizes[ann["image_id"]]
        mask, truth = gt_mask(ann, h, w), truths[ann["id"]]
        for m in margins:
            box = derived_bbox(ann, w, h, margin=m)
            fits[m].append((_box_iou(box, truth), _mask_recall(mask, box)))
    return {f"{m:g}": {"box_iou": round(float(np.mean([f[0] for f in v])), 4),
                       "mask_recall": round(float(np.mean([f[1] for f in v])), 4), "instances": len(v)}
            for m, v in fits.items()}


def _box_iou(a: list[float], b: list[float]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _mask_recall(mask: np.ndarray, box: list[float]) -> float:
    from mal.data.crops import box_mask

    return float((mask * box_mask(box, mask.shape)).sum() / max(1, mask.sum()))


# ------------------------------------------------------------------------------------------------ the runs


def _subset(raw: dict, count: int | None) -> dict:
    if not count:
        return raw
    images = sorted(raw["images"], key=lambda img: img["id"])[:count]
    keep = {img["id"] for img in images}
    return {**raw, "images": images, "annotations": [a for a in raw["annotations"] if a["image_id"] in keep]}


def _write(doc: dict, path: Path) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _data_args(train: Path, val: Path, images: Path) -> list[str]:
    return [f"dataset.train_ann_path={train}", f"dataset.train_img_dir={images}",
            f"dataset.val_ann_path={val}", f"dataset.val_img_dir={images}"]


def _train(folder: Path, train: Path, val: Path, images: Path, overrides: list[str]) -> Path:
    """One `mal train` (in this process) with a single validation at the end; its last checkpoint."""
    from mal import runner
    from mal.spec import load_spec

    epochs = load_spec(SPEC, overrides).train.num_epochs
    args = [*_data_args(train, val, images), *overrides, f"train.validation_interval={epochs}", f"results_dir={folder}"]
    runner.fit(load_spec(SPEC, args), enable_progress_bar=False)
    return folder / "train" / "mal_model_latest.pth"


def _miou(checkpoint: Path, val: Path, images: Path, folder: Path, overrides: list[str]) -> float:
    """`mal evaluate` (in this process) of a checkpoint on a val json: its class-balanced mIoU."""
    from mal import runner
    from mal.spec import load_spec

    args = [*_data_args(val, val, images), *overrides, f"evaluate.checkpoint={checkpoint}", f"results_dir={folder}"]
    metrics, _ = runner.evaluate(load_spec(SPEC, args))
    return round(float(metrics["mIoU"]), 4)


def _class_balanced(records: list[dict[str, Any]], ious: dict[int, float] | None = None) -> float:
    """Class-balanced mIoU of the records with a truth (`ious` replaces some of their IoUs by annotation id)."""
    from mal.metrics import MIoU

    acc = MIoU()
    for rec in records:
        if "iou" in rec:
            acc.add((ious or {}).get(rec["ann_id"], rec["iou"]), rec["category_id"], rec["box_area"])
    return round(float(acc.compute()["mIoU"]), 4)


def _box_regions(records: list[dict[str, Any]], doc: dict) -> Any:
    """Per scored record: its annotation in `doc`, its mask and the truth in the box's region, and the
    region's origin (x0, y0) in the image."""
    from pycocotools import mask as mask_utils

    from mal.data.crops import box_pixels
    from plumbing.coco import gt_mask

    anns = {a["id"]: a for a in doc["annotations"]}
    sizes = {img["id"]: (img["height"], img["width"]) for img in doc["images"]}
    for rec in records:
        if "iou" not in rec:
            continue
        ann = anns[rec["ann_id"]]
        h, w = sizes[ann["image_id"]]
        x0, y0, x1, y1 = box_pixels(ann["bbox"], (h, w))
        truth = gt_mask(ann, h, w)
        yield rec, ann, mask_utils.decode(rec["det"]["segmentation"])[y0:y1, x0:x1].astype(bool), truth[y0:y1, x0:x1] > 0, (x0, y0), int(truth.sum())


def _records(checkpoint: Path, doc: dict, images: Path, folder: Path, overrides: list[str]) -> list[dict[str, Any]]:
    from mal.runner.evaluate import evaluation_records
    from mal.spec import load_spec

    folder.mkdir(parents=True, exist_ok=True)
    val = _write(doc, folder / "val.json")
    args = [*_data_args(val, val, images), *overrides, f"evaluate.checkpoint={checkpoint}", f"results_dir={folder}"]
    return evaluation_records(load_spec(SPEC, args))[0]


def _corrective_pass(checkpoint: Path, val_raw: dict, images: Path, folder: Path, overrides: list[str], rounds: int) -> list[float]:
    """mIoU after each round of a corrective pass (see the module's text) over `val_raw`'s boxes."""
    doc = json.loads(json.dumps(val_raw))  # a deep copy: the clicks go into it round by round
    scores = []
    for r in range(rounds + 1):
        records = _records(checkpoint, doc, images, folder / f"round-{r}", overrides)
        scores.append(_class_balanced(records))
        if r == rounds:
            break
        for _, ann, mask, truth, (x0, y0), _ in _box_regions(records, doc):
            click = corrective_click(mask, truth)
            if click is not None:
                ann.setdefault("points", []).append([click[0] + x0, click[1] + y0, click[2]])
    return scores


def click_ceiling(records: list[dict[str, Any]], doc: dict) -> float:
    """What `doc`'s clicks could buy at most by setting right the errors they land on: the mIoU when every
    error region (`error_regions`, in the box) holding a click is set to the truth.
    `records` are the masks without the clicks (`doc` is the same boxes with them)."""
    from mal.data.prompts import region_prompt_maps

    ious = {}
    for rec, ann, mask, truth, (x0, y0), truth_area in _box_regions(records, doc):
        parts, _ = error_regions(mask, truth)
        h, w = mask.shape
        hit = np.unique(parts[region_prompt_maps(ann, (y0, y0 + h, x0, x0 + w)).any(0)])
        fixed = np.where(np.isin(parts, hit[hit > 0]), truth, mask)
        outside = truth_area - int(truth.sum())  # the truth beyond the box, which no mask in it can cover
        ious[rec["ann_id"]] = float((fixed & truth).sum() / max(1, (fixed | truth).sum() + outside))
    return _class_balanced(records, ious)


def run(quick: bool, results: Path | None = None) -> dict[str, Any]:
    """Train the models, score them, print the table and write bench/results/prompts.json (or in `results`)."""
    quiet_lightning()
    s = QUICK if quick else FULL
    root = data_dir() / "coco128-seg"
    images = root / "images"
    train_raw = _subset(json.loads((root / "annotations" / "train.json").read_text()), s["images_per_set"])
    val_raw = _subset(json.loads((root / "annotations" / "val.json").read_text()), s["images_per_set"])
    overrides = s["overrides"]
    folder = Path(tempfile.mkdtemp(prefix="bench-prompts-"))
    val_files = {name: _write(with_prompts(val_raw, kind), folder / f"val-{i}.json") for i, (name, kind) in enumerate(KINDS.items())}
    train_files = {name: _write(with_prompts(train_raw, kind, strip_masks=True), folder / f"train-{i}.json")
                   for i, (name, kind) in enumerate(KINDS.items())}

    # a model trained with prompts chooses its threshold (train.choose_mask_thres) on what its training sees
    # validated: the training boxes with their masks, so that no val figure picks it
    selection = _write(with_prompts(train_raw, None), folder / "train-masks.json")
    checkpoints = {}
    for i, name in enumerate(KINDS if TRAINING else (BOXES,)):
        console.print(f"training on coco128-seg train with {name} ...")
        checkpoints[name] = _train(folder / f"run-{i}", train_files[name], selection, images, overrides)

    def score(checkpoint: Path, val: Path, tag: str, extra: tuple[str, ...] = ()) -> float:
        return _miou(checkpoint, val, images, folder / f"eval-{tag}", [*overrides, *extra])

    boxes_only = score(checkpoints[BOXES], val_files[BOXES], "boxes")
    figures: dict[str, dict[str, float | None]] = {}
    for i, name in enumerate(KINDS):
        if name == BOXES:  # one model, one val file: every column is the same run
            figures[name] = dict.fromkeys(COLUMNS, boxes_only)
            continue
        console.print(f"scoring {name} ...")
        figures[name] = {column: score(checkpoints[BOXES], val_files[name], f"{i}-{j}", extra)
                         for j, (column, extra) in enumerate(READINGS.items())}
        trained = checkpoints.get(name)
        figures[name]["training time"] = score(trained, val_files[BOXES], f"{i}-training") if trained else None
        figures[name]["both"] = score(trained, val_files[name], f"{i}-both") if trained else None
    rounds = max(CORRECTIVE.values())
    passes = {}
    for j, (column, extra) in enumerate(READINGS.items()):
        console.print(f"corrective pass, {column} ...")
        passes[column] = _corrective_pass(checkpoints[BOXES], val_raw, images, folder / f"pass-{j}", [*overrides, *extra], rounds)
    for name, clicks in CORRECTIVE.items():
        figures[name] = {column: passes[column][clicks] if column in passes else None for column in COLUMNS}
    plain = _records(checkpoints[BOXES], val_raw, images, folder / "plain", overrides)
    ceiling = {name: click_ceiling(plain, json.loads(val_files[name].read_text())) for name, kind in KINDS.items() if isinstance(kind, int)}
    shutil.rmtree(folder, ignore_errors=True)
    fit = {"train": box_fit(train_raw), "val": box_fit(val_raw)}

    print_table(f"prompts: class-balanced mIoU on coco128-seg val{' [quick]' if quick else ''}",
                ["prompts", *COLUMNS], [[name, *("-" if row[c] is None else row[c] for c in COLUMNS)] for name, row in figures.items()])
    print_table("boxes derived from simulated scribbles (coco128-seg train)", ["margin", "box IoU", "mask recall"],
                [[m, f["box_iou"], f["mask_recall"]] for m, f in fit["train"].items()])
    console.print("at most, by setting right the error regions the random clicks land on: "
                  + ", ".join(f"{name} {value}" for name, value in ceiling.items()))
    for name in ("box + 3 points", "box + 3 corrective clicks"):
        for column in ("inference time", "training time"):
            if figures[name][column] is not None:
                gain = figures[name][column] - figures[BOXES][column]
                console.print(f"{name} over boxes only, {column}: {gain:+.3f} mIoU (goal +{GOAL:.2f})")
    from plumbing.coco_prompts import PROMPT_BOX_MARGIN

    settings = {
        "spec": str(SPEC.relative_to(ROOT)), "overrides": overrides, "images_per_set": s["images_per_set"],
        "seed": SEED, "checkpoint": "last epoch", "prompt_box_margin": PROMPT_BOX_MARGIN,
        "clicks": f"first k of {MAX_CLICKS} alternating object/background clicks, uniform in the mask / the box outside it",
        "corrective": "each round one click per box, deepest inside the largest error region, labelled with the truth; "
                      "one pass per reading of the clicks",
        "prompt_models_trained": TRAINING,
        "scribbles": f"longest 8-neighbour path in the mask's core (>= {SCRIBBLE_CORE} of the largest inner distance), "
                     f"simplified to {SCRIBBLE_TOLERANCE_PX} px, no bbox",
    }
    outcome = {"miou": figures, "random_click_ceiling": ceiling, "derived_box_fit": fit}
    write_result(NAME, settings, outcome, quick, **({"folder": results} if results else {}))
    return outcome
