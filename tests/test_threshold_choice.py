"""The binarisation threshold chosen on the val set: which one wins, how the records are read at it, and how
it travels from the training checkpoint through the exported weights into evaluation and inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mal.errors import UserError
from mal.module import MALModule, validation_records
from mal.predict import InstanceMask
from mal.spec import load_spec
from mal.threshold_choice import CHECKPOINT_KEY, GRID, at_thresholds, checked, choose
from tests.conftest import TINY


def _record(ann_id: int, category: int, ious: list[float]) -> dict:
    return {"ann_id": ann_id, "category_id": category, "box_area": 100.0, "iou": ious[0], "det": {"at": 0},
            "iou_at": ious, "det_at": [{"at": j} for j in range(len(ious))]}


def test_the_threshold_with_the_best_class_balanced_miou_wins_and_the_records_are_read_at_it():
    grid = (0.1, 0.3, 0.5)
    # category 1 has three boxes that like 0.3 a little, category 2 one box that likes 0.5 a lot: per class,
    # 0.5 wins (0.55 + 0.9) / 2 against 0.3's (0.6 + 0.5) / 2, where a mean over boxes would pick 0.3
    records = [_record(k, 1, [0.5, 0.6, 0.55]) for k in range(3)] + [_record(9, 2, [0.3, 0.5, 0.9])]
    records.append({"ann_id": 10, "category_id": 2, "box_area": 100.0, "box_score": 0.4})  # no mask: kept as it is
    unmasked = {"ann_id": 11, "category_id": 2, "box_area": 100.0, "box_score": 0.4,
                "scores_at": [{"box_score": 0.1 * j} for j in range(3)]}  # no mask: its box_score read at the choice
    chosen, read = choose([*records, unmasked], grid, prefer=0.1)
    assert chosen == 0.5
    assert [r.get("iou") for r in read] == [0.55, 0.55, 0.55, 0.9, None, None]
    assert read[3]["det"] == {"at": 2}
    assert not any("iou_at" in r or "det_at" in r or "scores_at" in r for r in read)
    assert read[4] == records[4]
    assert read[5]["box_score"] == 0.2


def test_a_tie_goes_to_the_spec_threshold_and_no_mask_means_no_choice():
    flat = [_record(1, 1, [0.7, 0.7, 0.7])]
    assert choose(flat, (0.1, 0.5, 0.9), prefer=0.5)[0] == 0.5
    assert choose(flat, (0.1, 0.5, 0.9), prefer=0.1)[0] == 0.1
    boxes_only = [{"ann_id": 1, "category_id": 1, "box_area": 4.0, "box_score": 0.2}]
    assert choose(boxes_only, GRID, prefer=0.1) == (None, boxes_only)


def test_a_mask_binarised_again_at_each_threshold():
    prob = np.array([[0.05, 0.25], [0.45, 0.95]], np.float32)
    inst = InstanceMask(1, 1, 1, [0, 0, 2, 2], (2, 2), (0, 2, 0, 2), prob > 0.1, 0.0, prob=prob)
    masks = at_thresholds(inst, (0.1, 0.5, 0.99))
    assert [int(m.mask.sum()) for m in masks] == [3, 1, 0]
    assert masks[1].score == pytest.approx(0.95) and masks[2].score == pytest.approx(prob.mean())
    assert all(m.prob is None for m in masks)
    with pytest.raises(ValueError, match="keep_prob"):
        at_thresholds(InstanceMask(1, 1, 1, [0, 0, 2, 2], (2, 2), (0, 2, 0, 2), prob > 0.1, 0.0), GRID)


@pytest.mark.parametrize("bad", [1.5, 0.0, -0.2, math.nan, "0.5", True, None, [0.5]])
def test_a_threshold_read_from_a_checkpoint_must_be_in_the_open_unit_interval(bad):
    with pytest.raises(UserError, match=f"{CHECKPOINT_KEY} .* is not a threshold in \\(0, 1\\)"):
        checked(bad, "model.pth")
    assert checked(0.4, "model.pth") == 0.4


def _graded_batch() -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[int, dict]]:
    """One 20x20 box on a 20x20 image whose ground truth is its left 12 columns; probability 0.8 there and 0.25
    on the rest, so 0.1 keeps the whole box and any threshold in (0.25, 0.8) exactly the truth."""
    logits = torch.full((1, 1, 20, 20), math.log(0.25 / 0.75))
    logits[..., :12] = math.log(0.8 / 0.2)
    truth = np.zeros((20, 20), np.uint8)
    truth[:, :12] = 1
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(truth))
    rle["counts"] = rle["counts"].decode("ascii")
    ann = {"id": 5, "image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20], "segmentation": rle, "iscrowd": 0}
    batch = {"ext_box": torch.tensor([[0.0, 0.0, 20.0, 20.0]]), "bbox": torch.tensor([[0.0, 0.0, 20.0, 20.0]]),
             "image_hw": torch.tensor([[20, 20]]), "ann_id": torch.tensor([5]), "image_id": torch.tensor([1]),
             "category_id": torch.tensor([1]), "box_area": torch.tensor([400.0]), "boxmask": torch.ones(1, 1, 20, 20),
             "image": torch.zeros(1, 3, 20, 20)}
    return logits, batch, {5: ann}


def test_validation_reads_the_masks_at_every_threshold_and_the_choice_finds_the_truth():
    logits, batch, anns = _graded_batch()
    at_spec = {b: 0.1 for b in ("small", "medium", "large")}
    (record,) = validation_records(logits, batch, at_spec, anns, grid=GRID)
    assert record["iou"] == pytest.approx(0.6)  # the whole box against 12 of its 20 columns
    assert record["iou_at"][GRID.index(0.5)] == pytest.approx(1.0)
    assert [r > 0.99 for r in record["iou_at"]] == [0.25 < t < 0.8 for t in GRID]
    chosen, (read,) = choose([record], GRID, prefer=0.1)
    assert chosen == 0.3 and read["iou"] == pytest.approx(1.0)  # of the perfect ones, the nearest to the spec's
    # box_score and its parts are read at the chosen threshold too: the box filled at 0.1, 12 columns at 0.3
    assert record["box_projection"] != read["box_projection"]
    assert read["box_projection"] == record["scores_at"][GRID.index(0.3)]["box_projection"]
    assert "scores_at" not in read
    (plain,) = validation_records(logits, batch, at_spec, anns)
    assert "iou_at" not in plain and plain["iou"] == record["iou"]


def test_the_chosen_threshold_travels_from_the_checkpoint_through_the_weights_file_to_inference(tmp_path):
    from mal.checkpoint import export_weights
    from mal.runner.evaluate import load_module
    from plumbing.torch_files import save_atomic

    spec = load_spec(None, [*TINY, f"results_dir={tmp_path}"])
    trained = MALModule(spec, choose_threshold=True)
    trained.use_threshold(0.6)
    checkpoint = {"state_dict": {f"net.{k}": v for k, v in trained.net.state_dict().items()}}
    trained.on_save_checkpoint(checkpoint)
    assert checkpoint[CHECKPOINT_KEY] == 0.6
    save_atomic(checkpoint, tmp_path / "train.ckpt")
    weights = export_weights(tmp_path / "train.ckpt", tmp_path / "model.pth")
    assert torch.load(weights, weights_only=True)[CHECKPOINT_KEY] == 0.6

    for source in (tmp_path / "train.ckpt", weights):
        assert set(load_module(spec, str(source)).thresholds.values()) == {0.6}
    told_not_to = load_spec(None, [*TINY, f"results_dir={tmp_path}", "train.choose_mask_thres=false", "train.mask_thres=[0.2]"])
    assert set(load_module(told_not_to, str(weights)).thresholds.values()) == {0.2}

    resumed = MALModule(spec, choose_threshold=True)
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.chosen_threshold == 0.6
    fixed = MALModule(spec)  # a run that does not choose keeps the spec's on resume
    fixed.on_load_checkpoint(checkpoint)
    assert fixed.chosen_threshold is None and set(fixed.thresholds.values()) == {0.1}

    bad = dict(checkpoint, **{CHECKPOINT_KEY: 3.0})
    save_atomic(bad, tmp_path / "bad.ckpt")
    with pytest.raises(UserError, match="is not a threshold"):
        load_module(spec, str(tmp_path / "bad.ckpt"))
