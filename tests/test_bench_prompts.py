"""bench/prompts.py's click and scribble simulation: seeded, on the object (or off it) as labelled, and
accepted by the COCO validation it feeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.prompts import (
    box_fit,
    click_ceiling,
    corrective_click,
    error_regions,
    simulate_clicks,
    simulate_scribble,
    with_prompts,
)


def _disc(size: int = 40, radius: float = 12.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return ((xx + 0.5 - size / 2) ** 2 + (yy + 0.5 - size / 2) ** 2 <= radius**2).astype(np.uint8)


def test_clicks_alternate_object_and_background_inside_the_box_and_repeat_with_the_seed():
    mask = _disc()
    bbox = [8.0, 8.0, 24.0, 24.0]
    clicks = simulate_clicks(mask, bbox, 10, np.random.default_rng([0, 5]))
    assert [c[2] for c in clicks] == [1, 0] * 5
    for x, y, label in clicks:
        assert 8 <= x <= 32 and 8 <= y <= 32
        assert mask[int(y), int(x)] == label
    assert len({(x, y) for x, y, _ in clicks}) == 10  # drawn without replacement
    assert simulate_clicks(mask, bbox, 10, np.random.default_rng([0, 5])) == clicks
    assert simulate_clicks(mask, bbox, 10, np.random.default_rng([0, 6])) != clicks


def test_a_box_the_mask_fills_gets_object_clicks_only():
    mask = np.zeros((20, 20), np.uint8)
    mask[5:10, 5:10] = 1
    clicks = simulate_clicks(mask, [5, 5, 5, 5], 3, np.random.default_rng(0))
    assert [c[2] for c in clicks] == [1, 1, 1]


def test_a_corrective_click_goes_deep_inside_the_largest_error_with_the_truths_label():
    truth = np.zeros((30, 30), bool)
    truth[5:25, 5:25] = True
    mask = truth.copy()
    mask[5:25, 15:25] = False  # a 20x10 miss
    mask[0:3, 0:3] = True  # a smaller spill
    x, y, label = corrective_click(mask, truth)
    assert label == 1 and 15 <= x - 0.5 <= 24 and 5 <= y - 0.5 <= 24
    assert 18 <= x - 0.5 <= 21  # the miss's middle column band, the farthest from its edges
    mask[5:25, 15:25] = True  # once the miss is fixed, the spill is next
    assert corrective_click(mask, truth)[2] == 0
    assert corrective_click(truth, truth) is None


def test_the_click_ceiling_sets_right_only_the_error_regions_the_clicks_land_on():
    image = {"id": 1, "width": 20, "height": 20}
    truth = np.zeros((20, 20), np.uint8)
    truth[0:20, 0:10] = 1
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "iscrowd": 0,
           "segmentation": {"size": [20, 20], "counts": _rle(truth)}}
    mask = truth.copy()
    mask[0:5, 0:10] = 0  # a miss of 50 pixels
    mask[15:20, 10:20] = 1  # a spill of 50 pixels
    iou = float((mask & truth).sum() / (mask | truth).sum())
    record = {"ann_id": 1, "category_id": 1, "box_area": 400.0, "iou": iou,
              "det": {"segmentation": {"size": [20, 20], "counts": _rle(mask)}}}

    def doc(points):
        return {"images": [image], "annotations": [{**ann, "points": points}]}

    assert click_ceiling([record], doc([[5.5, 10.5, 1]])) == pytest.approx(iou, abs=1e-4)  # a click on no error
    assert click_ceiling([record], doc([[2.5, 2.5, 1]])) == pytest.approx(200 / 250, abs=1e-4)  # the miss set right
    assert click_ceiling([record], doc([[2.5, 2.5, 1], [17.5, 17.5, 0]])) == pytest.approx(1.0)


def test_a_miss_and_a_spill_that_touch_are_two_error_regions():
    truth = np.zeros((20, 20), bool)
    truth[0:10, 0:10] = True
    mask = np.zeros((20, 20), bool)
    mask[10:20, 10:20] = True  # a spill touching the miss at a corner only
    labels, _ = error_regions(mask, truth)
    assert len(np.unique(labels)) == 3  # background, the miss, the spill
    assert corrective_click(mask, truth)[2] in (0, 1)
    mask[10:20, 10:14] = False  # now the miss is the larger: the click is on it, labelled object
    x, y, label = corrective_click(mask, truth)
    assert label == 1 and x < 10 and y < 10


def _rle(mask: np.ndarray) -> str:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"].decode("ascii")


@pytest.mark.parametrize("shape", ["bar", "ell"])
def test_a_scribble_stays_on_the_object_and_runs_along_it(shape):
    mask = np.zeros((60, 60), np.uint8)
    if shape == "bar":
        mask[25:33, 5:55] = 1
    else:  # an L: the path has to turn the corner
        mask[5:55, 5:15] = 1
        mask[45:55, 5:55] = 1
    line = simulate_scribble(mask, np.random.default_rng(1))
    xy = np.array(line).reshape(-1, 2)
    for a, b in zip(xy, xy[1:], strict=False):
        for t in np.linspace(0, 1, 50):
            x, y = a + t * (b - a)
            assert mask[int(y), int(x)], (shape, line)
    extent = xy.max(0) - xy.min(0)
    assert extent[0] > 30 and (shape == "bar" or extent[1] > 30)
    assert simulate_scribble(np.zeros((5, 5), np.uint8), np.random.default_rng(0)) == []


def test_simulated_prompts_pass_the_coco_validation_and_nest(tiny_data, tmp_path):
    from plumbing.coco import load_coco

    raw = json.loads((tiny_data / "val" / "annotations.json").read_text())
    one, three = with_prompts(raw, 1)["annotations"], with_prompts(raw, 3)["annotations"]
    assert all(a["points"] == b["points"][:1] for a, b in zip(one, three, strict=True))  # box + 1 is box + 3's first
    for kind in (10, "scribble"):
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(with_prompts(raw, kind, strip_masks=True)))
        coco = load_coco(str(path), str(tiny_data / "val" / "images"))
        assert all("segmentation" not in a for a in coco.anns)
        if kind == "scribble":
            assert coco.derived_boxes == {a["id"] for a in coco.anns}
    fit = box_fit(raw, margins=(0.0, 0.4))
    assert 0 < fit["0"]["mask_recall"] < fit["0.4"]["mask_recall"] <= 1
    assert 0 < fit["0"]["box_iou"] <= 1 and fit["0"]["instances"] == len(raw["annotations"])
