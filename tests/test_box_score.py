"""box_score, the validation score from boxes alone: its two factors, that it ranks true masks above the filled
box, the metrics of box-only and partly masked validation sets, and which metric judges a run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from mal.box_score import colour_agreement, edge_agreement, mask_scores, projection_fill
from mal.data import box_crop, eval_margins, normalize
from mal.data.crops import IMAGENET_MEAN, IMAGENET_STD
from mal.metrics import class_balanced_mean
from mal.module import compute_metrics
from mal.objective import judged_by
from mal.spec import load_spec
from plumbing.coco import gt_mask, load_coco
from plumbing.errors import UserError


def _box(size: int, x0: int, y0: int, x1: int, y1: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    mask[..., y0:y1, x0:x1] = 1
    return mask


def test_projection_fill_is_one_for_the_box_zero_for_nothing_and_counts_missed_columns():
    box = _box(32, 8, 8, 24, 24)
    assert projection_fill(box, box).item() == pytest.approx(1.0)
    assert projection_fill(torch.zeros_like(box), box).item() == 0.0
    left_half = _box(32, 8, 8, 16, 24)  # every row, half the columns: column Dice 2*8/(8+16)
    assert projection_fill(left_half, box).item() == pytest.approx((1 + 2 / 3) / 2)


def test_edge_agreement_prefers_an_outline_on_the_colour_edge():
    rgb = torch.full((1, 3, 32, 32), 0.5)
    rgb[..., 10:22, 10:22] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)  # a red square on grey
    on_edge = edge_agreement(_box(32, 10, 10, 22, 22), rgb).item()
    shifted = edge_agreement(_box(32, 14, 14, 26, 26), rgb).item()
    assert on_edge > 0.9 and on_edge > shifted + 0.2
    assert edge_agreement(torch.zeros(1, 1, 32, 32), rgb).item() == 0.0


def test_colour_agreement_prefers_the_object_to_the_filled_box_and_to_part_of_it():
    rgb = torch.full((1, 3, 32, 32), 0.5)
    rgb[..., 10:22, 10:22] = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1)  # a red square on grey
    box = _box(32, 6, 6, 26, 26)  # a loose box: grey inside it too, and grey around it
    exact = colour_agreement(_box(32, 10, 10, 22, 22), rgb, box).item()
    filled = colour_agreement(box, rgb, box).item()
    half = colour_agreement(_box(32, 10, 10, 16, 22), rgb, box).item()
    assert exact > 0.95 and exact > filled + 0.3 and exact > half + 0.1
    assert colour_agreement(torch.zeros(1, 1, 32, 32), rgb, box).item() == 0.0
    normalised = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    assert mask_scores(_box(32, 10, 10, 22, 22), normalised, box)["box_score"].item() == pytest.approx(exact, abs=1e-4)


def _crop_scores(coco, crop_size: int) -> tuple[list[float], list[float], list[int]]:
    """box_score of each masked box's true mask and of its filled box, on the validation crop."""
    margins = eval_margins([0.6, 0.6])
    true, filled, categories = [], [], []
    images: dict[int, np.ndarray] = {}
    for ann in coco.anns:
        if ann.get("iscrowd") or not ann.get("segmentation"):
            continue
        info = coco.images[ann["image_id"]]
        if ann["image_id"] not in images:
            images[ann["image_id"]] = np.asarray(Image.open(coco.image_path(ann["image_id"])).convert("RGB"))
        image = images[ann["image_id"]]
        crop, boxmask, _ = box_crop(image, ann["bbox"], margins, crop_size)
        gt = np.repeat(gt_mask(ann, info["height"], info["width"])[..., None] * 255, 3, -1).astype(np.uint8)
        gt_crop = (box_crop(gt, ann["bbox"], margins, crop_size)[0][:1] > 127).float()[None]
        x, box = normalize(crop)[None], boxmask[None]
        true.append(mask_scores(gt_crop, x, box)["box_score"].item())
        filled.append(mask_scores(box, x, box)["box_score"].item())
        categories.append(ann["category_id"])
    return true, filled, categories


def test_the_filled_box_scores_clearly_below_the_true_masks_on_the_demo_set(demo_data):
    coco = load_coco(str(demo_data / "val" / "annotations.json"), str(demo_data / "val" / "images"))
    true, filled, categories = _crop_scores(coco, 96)
    assert class_balanced_mean(true, categories) > class_balanced_mean(filled, categories) + 0.1
    assert np.mean(np.array(true) > np.array(filled)) > 0.9  # box by box, not only on average


def test_the_filled_box_scores_below_the_true_masks_on_real_photos(shared_data):
    root = shared_data / "coco128-seg"
    coco = load_coco(str(root / "annotations" / "val.json"), str(root / "images"))
    true, filled, categories = _crop_scores(coco, 128)
    assert class_balanced_mean(true, categories) > class_balanced_mean(filled, categories) + 0.03
    assert np.mean(np.array(true) > np.array(filled)) > 0.7  # 78% measured on 2026-12-05


def _record(ann_id: int, category: int, score: float, iou: float | None = None) -> dict:
    record = {"ann_id": ann_id, "category_id": category, "box_area": 400.0, "box_score": score, "box_projection": 1.0, "box_edge": score}
    if iou is not None:
        record["iou"] = iou
        record["det"] = {"image_id": 1, "category_id": category, "score": 0.9, "segmentation": _rle(ann_id)}
    return record


def _rle(ann_id: int) -> dict:
    from pycocotools import mask as mask_utils

    mask = np.zeros((40, 40), np.uint8, order="F")
    mask[ann_id : ann_id + 20, 5:25] = 1
    rle = mask_utils.encode(mask)
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def _gt(masked: set[int]) -> dict:
    anns = [
        {"id": i, "image_id": 1, "category_id": 1, "bbox": [5, i, 20, 20], "area": 400, "iscrowd": 0,
         **({"segmentation": _rle(i)} if i in masked else {})}
        for i in (1, 2, 3)
    ]
    return {"images": [{"id": 1, "width": 40, "height": 40, "file_name": "a.png"}], "annotations": anns, "categories": [{"id": 1, "name": "x"}]}


def test_box_only_validation_has_a_box_score_and_no_mask_metrics():
    metrics = compute_metrics([_record(1, 1, 0.6), _record(2, 1, 0.8)], _gt(set()))
    assert metrics["box_score"] == pytest.approx(0.7) and metrics["num_boxes"] == 2
    assert metrics["num_instances"] == 0
    assert all(math.isnan(metrics[k]) for k in ("mIoU", "mIoU_small", "mask_AP", "mask_AP50"))


def test_a_partly_masked_set_scores_miou_on_its_masks_and_box_score_on_every_box():
    records = [_record(1, 1, 0.2, iou=0.9), _record(2, 1, 0.4), _record(3, 1, 0.6)]
    metrics = compute_metrics(records, _gt({1}))
    assert metrics["mIoU"] == pytest.approx(0.9) and metrics["num_instances"] == 1
    assert metrics["box_score"] == pytest.approx(0.4) and metrics["num_boxes"] == 3
    assert metrics["mask_AP"] > 0.9  # the unmasked boxes are neither missed objects nor unreadable GT


def _spec_with_val(tmp_path, masked: bool, *overrides: str):
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0}]
    if masked:
        anns[0]["segmentation"] = [[2, 2, 12, 2, 12, 12, 2, 12]]
    path = tmp_path / "val.json"
    path.write_text(json.dumps({"images": [{"id": 1, "width": 16, "height": 16, "file_name": "a.png"}], "annotations": anns,
                                "categories": [{"id": 1, "name": "x"}]}))
    return load_spec(None, [f"dataset.val_ann_path={path}", *overrides]), load_coco(str(path))


def test_the_metric_that_judges_a_run_follows_the_masks_and_the_study(tmp_path):
    spec, coco = _spec_with_val(tmp_path, masked=True)
    assert judged_by(spec, coco) == "mIoU"
    spec, coco = _spec_with_val(tmp_path, masked=False)
    assert judged_by(spec, coco) == "box_score"
    spec, coco = _spec_with_val(tmp_path, True, "automl.metric=box_score")
    assert judged_by(spec, coco) == "box_score"


@pytest.mark.parametrize(
    ("overrides", "default", "words"),
    [
        (["automl.metric=mIoU_large"], None, ["automl.metric=mIoU_large needs ground-truth masks", "val.json", "automl.metric=box_score"]),
        ([], "mIoU", ["automl.metric=mIoU needs ground-truth masks", "automl.metric=box_score"]),
        (["automl.metric=box_scor"], None, ["'box_scor' is not a metric", "did you mean 'box_score'"]),
    ],
)
def test_a_metric_the_validation_set_cannot_measure_is_one_user_error(tmp_path, overrides, default, words):
    spec, coco = _spec_with_val(tmp_path, False, *overrides)
    with pytest.raises(UserError) as caught:
        judged_by(spec, coco, default=default)
    assert all(w in str(caught.value) for w in words) and "\n" not in str(caught.value)
