"""Points and scribbles as prompts: their validation in COCO files, the box they imply, their way through the
crops' geometry, the prompt loss (and its absence), the key fit and forcing at test time, and a corrected
click that fixes a bad mask."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mal.data import MALEvalDataset, MALTrainDataset, label_units
from mal.data.crops import IMAGENET_MEAN, IMAGENET_STD
from mal.data.prompts import crop_prompt_maps, region_prompt_maps
from mal.errors import UserError
from mal.losses import label_maps, mal_losses, mean_field_pseudo_labels, prompt_loss
from mal.predict import InstanceMask, force_prompts, key_correction, prompted_logits, thresholds_by_bucket
from mal.prompt_regions import spread_prompts
from mal.spec import TrainConfig
from mal.threshold_choice import CHECKPOINT_KEY, GRID
from plumbing.coco import load_coco
from plumbing.coco_prompts import PROMPT_BOX_MIN_PX, derived_bbox

GOOD = Path(__file__).parent / "bad_inputs" / "good"
BASE = json.loads((GOOD / "annotations.json").read_text())  # two 96x80 images, boxes 1-4


def _load(tmp_path: Path, edit) -> object:
    doc = copy.deepcopy(BASE)
    edit(doc["annotations"])
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return load_coco(str(path), str(GOOD / "images"))


# ------------------------------------------------------------------------------------------------ the format


def test_points_and_scribbles_load_and_a_prompt_without_bbox_gets_its_extent_plus_the_margin(tmp_path):
    def edit(anns):
        anns[0]["points"] = [[20, 30, 1], [9.5, 11, 0]]
        anns[1]["scribbles"] = [[60, 30, 80, 40], [70, 50]]
        del anns[1]["bbox"]
        anns[2]["points"] = [[50, 20, 1]]
        anns[2]["bbox"] = None

    coco = _load(tmp_path, edit)
    assert coco.derived_boxes == {2, 3}
    # extent x 60..80, y 30..50: the longer side is 20, so 0.15 * 20 = 3 px on every side
    assert coco.anns[1]["bbox"] == [57.0, 27.0, 26.0, 26.0]
    # one point: the minimum margin on each side
    assert coco.anns[2]["bbox"] == [50 - PROMPT_BOX_MIN_PX, 20 - PROMPT_BOX_MIN_PX, 2 * PROMPT_BOX_MIN_PX, 2 * PROMPT_BOX_MIN_PX]
    assert coco.anns[0]["bbox"] == BASE["annotations"][0]["bbox"]  # a given box is kept as it is


def test_a_derived_box_is_clipped_to_its_image_and_ignores_background_points():
    ann = {"points": [[1, 2, 1], [90, 70, 0]], "scribbles": [[0, 0, 10, 4]]}
    assert derived_bbox(ann, 96, 80) == [0.0, 0.0, 12.0, 6.0]
    assert derived_bbox({"points": [[5, 5, 0]]}, 96, 80) is None


@pytest.mark.parametrize(
    "index, field, value, expect",
    [
        (0, "points", [[20, 30, 2]], "annotation 1: points[0] label 2 is not 1 (object) or 0 (background)"),
        (0, "points", [[20, 30, True]], "points[0] label True is not 1 (object) or 0 (background)"),
        (0, "points", [[20, 30, 1.0]], "points[0] label 1.0 is not 1 (object)"),
        (0, "points", [[97, 30, 0]], "points[0] (97, 30) lies outside its image (96x80)"),
        (0, "points", [[20, -1, 0]], "points[0] (20, -1) lies outside its image"),
        (0, "points", [20, 30, 1], "points[0] 20 is not [x, y, label] with finite x and y"),
        (0, "points", [[20, "30", 1]], "points[0] [20, '30', 1] is not [x, y, label]"),
        (0, "points", [[20, float("nan"), 1]], "is not [x, y, label] with finite x and y"),
        (0, "points", [[20, 30]], "points[0] [20, 30] is not [x, y, label]"),
        (0, "points", {"x": 1}, "points must be a list of [x, y, label]"),
        (0, "points", [[60, 30, 1]], "points[0] (60, 30) is on the object but outside its bbox [8, 10, 40, 48]"),
        (0, "scribbles", [[10, 12, 20]], "annotation 1: scribbles[0] has 3 numbers; a scribble is one or more x, y pairs"),
        (0, "scribbles", [[]], "scribbles[0] has 0 numbers"),
        (0, "scribbles", [10, 12, 20, 30], "scribbles[0] is not a polyline of finite x, y numbers (got 10)"),
        (0, "scribbles", [[[10, 12], [20, 30]]], "scribbles[0] is not a polyline of finite x, y numbers"),
        (0, "scribbles", [[10, 12, 20, 300]], "scribbles[0] point (20, 300) lies outside its image (96x80)"),
        (0, "scribbles", [[10, 12, 70, 30]], "scribbles[0] point (70, 30) is on the object but outside its bbox"),
        (0, "scribbles", "10 12", "scribbles must be a list of polylines"),
    ],
)
def test_a_bad_prompt_is_one_line(index, field, value, expect, tmp_path):
    with pytest.raises(UserError) as info:
        _load(tmp_path, lambda anns: anns[index].__setitem__(field, value))
    message = str(info.value)
    assert expect in message and "\n" not in message, message


def test_background_points_alone_cannot_make_a_box(tmp_path):
    def edit(anns):
        anns[0]["points"] = [[20, 30, 0]]
        del anns[0]["bbox"]

    with pytest.raises(UserError, match="annotation 1 has no bbox, and no object point or scribble to derive one from"):
        _load(tmp_path, edit)


def test_an_annotation_without_bbox_or_prompts_is_still_refused(tmp_path):
    with pytest.raises(UserError, match="annotation 1 bbox None is not 4 finite numbers"):
        _load(tmp_path, lambda anns: anns[0].pop("bbox"))


# ------------------------------------------------------------------------------------------------ rasterising


def test_prompt_maps_follow_the_crop_grid():
    ann = {"points": [[10.2, 20.9, 1], [4, 4, 0], [96, 80, 1]], "scribbles": [[2, 30.5, 7.9, 30.5]]}
    image = region_prompt_maps(ann, (0, 80, 0, 96))  # the whole image, one cell per pixel
    assert image[0, 20, 10] and image[1, 4, 4] and image[0, 79, 95]  # a point on the far edge: the last pixel
    assert image[0, 30, 2:8].all() and image[0, 30].sum() == 6
    assert image.sum() == 1 + 1 + 1 + 6
    # a crop of x 0..48, y 0..48 resized to 24: two image pixels per crop pixel; the point at (96, 80) is off it
    crop = crop_prompt_maps(ann, (0, 0, 48, 48), 24)
    assert crop[0, 10, 5] and crop[1, 2, 2] and crop[0, 15, 1:4].all()
    assert crop[0].sum() == 1 + 3 and crop[1].sum() == 1


def _red_dot_set(tmp_path: Path) -> object:
    """A black 96x80 image with red 5x5 patches under a point and along a scribble of the annotation."""
    pixels = np.zeros((80, 96, 3), np.uint8)
    pixels[28:33, 18:23] = (255, 0, 0)  # around the object point (20.5, 30.5)
    pixels[48:53, 28:45] = (255, 0, 0)  # around the scribble (30.5, 50.5) -> (42.5, 50.5)
    (tmp_path / "images").mkdir()
    Image.fromarray(pixels).save(tmp_path / "images" / "red.png")
    doc = {
        "images": [{"id": 1, "file_name": "red.png", "width": 96, "height": 80}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [10, 20, 50, 40],
                         "points": [[20.5, 30.5, 1]], "scribbles": [[30.5, 50.5, 42.5, 50.5]]}],
    }
    (tmp_path / "annotations.json").write_text(json.dumps(doc))
    return load_coco(str(tmp_path / "annotations.json"), str(tmp_path / "images"))


def _redness(normalised: torch.Tensor) -> torch.Tensor:
    """Red minus green of an ImageNet-normalised (..., 3, H, W) crop, in [0, 1] units."""
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    rgb = normalised * std + mean
    return rgb[..., 0, :, :] - rgb[..., 1, :, :]


def test_train_and_test_crops_carry_the_prompts_through_crop_resize_and_flip(tmp_path):
    coco = _red_dot_set(tmp_path)
    train = MALTrainDataset(coco, coco.anns, 48, (0.0, 1.2), seed=3)
    flipped = 0
    for epoch in range(12):
        item = train[(epoch, 0)]
        labelled = item["prompts"][0] > 0
        assert labelled.sum() >= 2
        # every labelled pixel shows red in the clean crop, and lies in the box
        assert (_redness(item["timage"])[labelled] > 0.5).all()
        assert (item["boxmask"][0][labelled] == 1).all()
        assert item["box_given"] == 1
        # the point is above and left of the scribble in the image: a flipped crop has it right of it
        rows, cols = labelled.nonzero().unbind(1)
        upper = rows < rows.float().mean()
        flipped += int(cols[upper].float().mean() > cols[~upper].float().mean())
    assert 0 < flipped < 12  # both orientations were drawn
    test_item = MALEvalDataset(coco, coco.anns, 48, (0.6, 0.6))[0]
    labelled = test_item["prompts"][0] > 0
    assert labelled.any() and (_redness(test_item["image"])[labelled] > 0.5).all()


def test_units_carry_the_prompts_to_every_labeling_engine(tmp_path):
    coco = _red_dot_set(tmp_path)
    (unit,) = label_units(coco, max_boxes=4)
    assert unit[0]["boxes"][0]["points"] == [[20.5, 30.5, 1]]
    assert json.loads(json.dumps(unit)) == unit  # plain data, as Ray ships it


# ------------------------------------------------------------------------------------------------ training


def _batch(n: int = 3, size: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    box = torch.zeros(n, 1, size, size)
    box[..., 3:13, 4:12] = 1
    return {
        "student": torch.randn(n, 1, size, size, generator=g),
        "teacher": torch.randn(n, 1, size, size, generator=g),
        "image": torch.randn(n, 3, size, size, generator=g),
        "box": box,
    }


def _losses(b: dict, prompts: torch.Tensor | None, box_given: torch.Tensor | None = None):
    student = b["student"].clone().requires_grad_(True)
    cfg = TrainConfig(crf_num_iter=5, loss_aff_weight=0)
    out = mal_losses(student, b["teacher"], b["image"], b["box"], cfg, 50, 1, prompts=prompts, box_given=box_given)
    out["loss"].backward()
    return out, student.grad


def test_boxes_without_prompts_train_exactly_as_before():
    b = _batch()
    before, grad_before = _losses(b, None)
    empty = torch.zeros(3, 2, 32, 32, dtype=torch.uint8)
    after, grad_after = _losses(b, empty, torch.ones(3))
    assert torch.equal(before["loss"], after["loss"]) and torch.equal(grad_before, grad_after)
    assert "loss_prompt" not in after
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    zero = prompt_loss(logits, torch.zeros(2, 2, 8, 8))
    zero.sum().backward()
    assert torch.equal(zero, torch.zeros(2)) and torch.equal(logits.grad, torch.zeros_like(logits))


def test_a_prompted_crop_leaves_its_neighbours_gradients_unchanged_and_is_pulled_towards_its_labels():
    b = _batch()
    _, plain = _losses(b, None)
    prompts = torch.zeros(3, 2, 32, 32, dtype=torch.uint8)
    prompts[0, 0, 12, 12] = 1  # object at output cell (6, 6)
    prompts[0, 1, 8, 20] = 1  # background at output cell (4, 10)
    out, grad = _losses(b, prompts, torch.ones(3))
    assert torch.equal(grad[1:], plain[1:])
    assert out["loss_prompt"] > 0
    extra = grad[0] - plain[0]
    assert extra[0, 6, 6] < 0 < extra[0, 4, 10]  # descent raises the object logit, lowers the background one


def test_a_derived_box_is_left_out_of_mil():
    b = _batch()
    out, _ = _losses(b, None, torch.tensor([0.0, 1.0, 1.0]))
    only_given, _ = _losses({k: v[1:] for k, v in b.items()}, None)
    assert out["loss_mil"] == pytest.approx(float(only_given["loss_mil"]), abs=1e-6)


def test_label_maps_pool_to_the_output_and_drop_contradictions():
    prompts = torch.zeros(1, 2, 8, 8)
    prompts[0, 0, 1, 1] = 1
    prompts[0, 0, 5, 5] = prompts[0, 1, 4, 4] = 1  # the same 4x4 output cell, labelled both ways
    labels = label_maps(prompts, (2, 2))
    assert labels[0, 0].tolist() == [[1, 0], [0, 0]] and labels[0, 1].sum() == 0


def test_crf_seeds_hold_their_label():
    image = torch.zeros(1, 3, 8, 8)
    probs = torch.full((1, 1, 8, 8), 0.05)
    seeds = torch.zeros(1, 2, 8, 8)
    seeds[0, 0, 2, 2] = 1
    box = torch.ones(1, 1, 8, 8)
    plain = mean_field_pseudo_labels(image, probs, box, 3, 0.1, 5, 0.1, 0.9)
    seeded = mean_field_pseudo_labels(image, probs, box, 3, 0.1, 5, 0.1, 0.9, seeds=seeds)
    assert plain[0, 0, 2, 2] == 0 and seeded[0, 0, 2, 2] == 1


# ------------------------------------------------------------------------------------------------ test time


def test_forcing_sets_object_pixels_and_clears_background_ones():
    inst = InstanceMask(1, 1, 1, [10, 10, 6, 4], (20, 20), (10, 14, 10, 16), np.zeros((4, 6), bool), 0.5)
    inst.mask[1, 1] = True
    ann = {"points": [[12.5, 10.5, 1], [11.5, 11.5, 0], [13.5, 13.5, 1], [13.5, 13.5, 0]], "scribbles": [[10, 12, 15.9, 12]]}
    forced = force_prompts(inst, ann)
    assert forced.mask[0, 2] and not forced.mask[1, 1] and not forced.mask[3, 3]  # the contradiction keeps 0
    assert forced.mask[2].all() and forced.mask.sum() == 1 + 6
    assert force_prompts(inst, {"id": 1}) is inst


def test_the_key_fit_flips_the_features_a_click_shares_and_keeps_the_rest():
    # two features: "red" (the clicked region's) and a constant; the network says no to red
    red = torch.tensor([1.0] * 8 + [0.0] * 8)
    values = torch.stack([red, torch.ones(16)])
    base = torch.full((16,), -3.0)
    labels = torch.zeros(2, 16)
    labels[0, 2] = 1
    d = key_correction(base, values, labels, torch.ones(16, dtype=torch.bool), keep_weight=0.1)
    fitted = base + d @ values
    assert (fitted[:8] > 0).all() and (fitted[8:] < -2.5).all()
    # with no cost on change the click flips too; a high cost holds everything back
    held = base + key_correction(base, values, labels, torch.ones(16, dtype=torch.bool), keep_weight=100.0) @ values
    assert (held[:8] < 0).all()


def test_crops_without_prompts_keep_their_logits_exactly():
    class Net:
        def value_maps(self, image, box_area):
            return image[:, :2]

    batch = {"image": torch.randn(2, 3, 8, 8), "box_area": torch.tensor([10.0, 20.0]),
             "boxmask": torch.ones(2, 1, 8, 8), "prompts": torch.zeros(2, 2, 8, 8, dtype=torch.uint8)}
    logits = torch.randn(2, 1, 8, 8)
    cut = thresholds_by_bucket([0.5])
    assert prompted_logits(Net(), logits, batch, cut) is logits
    batch["prompts"][1, 0, 3, 3] = 1
    out = prompted_logits(Net(), logits, batch, cut)
    assert torch.equal(out[0], logits[0]) and not torch.equal(out[1], logits[1])


def _two_region_crop(logit_rows: slice) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """A 16x16 crop: its box is columns 2..13; a red square (rows 2..13, columns 2..7) and a blue one (rows
    2..13, columns 8..13), grey elsewhere. The network keeps the red square and `logit_rows` of the blue."""
    image = torch.full((1, 3, 16, 16), 0.0)
    image[0, 0, 2:14, 2:8] = 2.0
    image[0, 2, 2:14, 8:14] = 2.0
    values = image.clone()
    logits = torch.full((1, 1, 16, 16), -3.0)
    logits[0, 0, 2:14, 2:8] = 3.0
    logits[0, 0, logit_rows, 8:14] = 2.0
    boxmask = torch.zeros(1, 1, 16, 16)
    boxmask[..., 2:14, 2:14] = 1
    batch = {"image": image, "boxmask": boxmask, "prompts": torch.zeros(1, 2, 16, 16, dtype=torch.uint8)}
    return logits, values, batch


def test_an_object_click_on_a_missed_region_turns_that_region_over_and_stops_at_its_edge():
    logits, values, batch = _two_region_crop(slice(0, 0))  # the blue half is missed
    batch["prompts"][0, 0, 7, 10] = 1
    out = spread_prompts(logits, values, batch, torch.zeros(1))
    assert (out[0, 0, 2:14, 8:14] > 0).all()  # the whole blue square, not only the clicked cell
    assert (out[0, 0, 2:14, 2:8] == logits[0, 0, 2:14, 2:8]).all()  # the red one is untouched
    assert (out[0, 0, :2] < 0).all() and (out[0, 0, 14:] < 0).all()  # the grey around stays background


def test_a_background_click_on_a_spill_clears_the_spill_not_the_object():
    logits, values, batch = _two_region_crop(slice(2, 14))  # the blue half is kept: a spill
    batch["prompts"][0, 1, 7, 11] = 1
    out = spread_prompts(logits, values, batch, torch.zeros(1))
    assert (out[0, 0, 2:14, 8:14] < 0).all() and (out[0, 0, 2:14, 2:8] > 0).all()


def test_clicks_the_mask_agrees_with_change_nothing():
    logits, values, batch = _two_region_crop(slice(0, 0))
    batch["prompts"][0, 0, 7, 4] = 1  # object, on the kept red square
    batch["prompts"][0, 1, 7, 10] = 1  # background, on the left-out blue one
    assert torch.equal(spread_prompts(logits, values, batch, torch.zeros(1)), logits)


def test_the_threshold_decides_which_side_a_cell_is_on():
    logits, values, batch = _two_region_crop(slice(0, 0))
    batch["prompts"][0, 0, 7, 4] = 1  # on red, whose logit 3 is under a threshold logit of 4: a disagreement
    out = spread_prompts(logits, values, batch, torch.tensor([4.0]))
    assert (out[0, 0, 2:14, 2:8] > 4).all() and (out[0, 0, 2:14, 8:14] < 4).all()


def test_value_maps_read_the_logits_with_the_key():
    from mal.model import MALNet, encoder_levels, fuse_levels

    torch.manual_seed(0)
    net = MALNet("vit-micro/8", 32, mask_head_hidden_channel=8, mask_head_out_channel=8, key_pooling="box").eval()
    image, area, box = torch.randn(3, 3, 32, 32), torch.tensor([100.0, 5000.0, 20000.0]), torch.ones(3, 1, 32, 32)
    with torch.no_grad():
        key = net.roi_head(fuse_levels(net.backbone, encoder_levels(net.backbone, image)), box)
        read = torch.einsum("bc,bchw->bhw", key, net.value_maps(image, area)).unsqueeze(1)
        torch.testing.assert_close(read, net(image, area, box), rtol=1e-4, atol=1e-4)


def _disc_set(tmp_path: Path, points: list | None) -> object:
    """A black 64x64 image with a red disc (centre 32, 32; radius 14), its box and polygon, and `points`."""
    yy, xx = np.mgrid[:64, :64]
    disc = (xx + 0.5 - 32) ** 2 + (yy + 0.5 - 32) ** 2 <= 14**2
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[disc] = (255, 0, 0)
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(pixels).save(tmp_path / "images" / "disc.png")
    angles = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    polygon = np.stack([32 + 14 * np.cos(angles), 32 + 14 * np.sin(angles)], 1).reshape(-1).round(2).tolist()
    ann = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [18, 18, 28, 28], "segmentation": [polygon], "iscrowd": 0}
    if points:
        ann["points"] = points
    doc = {"images": [{"id": 1, "file_name": "disc.png", "width": 64, "height": 64}],
           "categories": [{"id": 1, "name": "disc"}], "annotations": [ann]}
    path = tmp_path / f"disc-{len(points or [])}.json"
    path.write_text(json.dumps(doc))
    return load_coco(str(path), str(tmp_path / "images"))


def test_a_corrected_click_fixes_a_mask_that_misses_half_the_object(tmp_path):
    """A model that sees the red disc only in the left half of its crop draws half the disc; one object click
    on the right half, re-run, gives the whole disc (by the key fit, by the region turned over, or both), where
    forcing alone would add one pixel."""
    from mal.model import build_mal
    from mal.runner import Labeler
    from mal.spec import load_spec
    from plumbing.torch_files import save_atomic
    from tests.conftest import TINY

    spec = load_spec(None, [*TINY, "inference.num_gpus=0", "inference.load_mask=true", f"results_dir={tmp_path}"])
    weights = save_atomic(build_mal(spec.model, spec.dataset.crop_size).state_dict(), tmp_path / "model.pth")

    def features(image: torch.Tensor, box_area: torch.Tensor) -> torch.Tensor:
        red = torch.nn.functional.interpolate((_redness(image) > 0.5).float()[:, None], size=(16, 16), mode="area")
        left = torch.zeros_like(red)
        left[..., :8] = 1
        return torch.cat([red, left, torch.ones_like(red)], 1)

    def predict(image, box_area, boxmask=None, **_):
        return torch.einsum("c,bchw->bhw", torch.tensor([4.0, 4.0, -7.0]), features(image, box_area)).unsqueeze(1)

    def label(points: list | None, refine: bool = True, spread: bool = True) -> float:
        run = load_spec(None, [*TINY, "inference.num_gpus=0", "inference.load_mask=true", f"inference.checkpoint={weights}",
                               f"evaluate.prompt_refine={str(refine).lower()}", f"evaluate.prompt_spread={str(spread).lower()}",
                               f"results_dir={tmp_path}"])
        labeler = Labeler(run)
        labeler.module.net.predict = predict
        labeler.module.net.student.value_maps = features
        (unit,) = label_units(_disc_set(tmp_path, points), max_boxes=4, with_masks=True)
        (ann,) = labeler.label(unit)
        assert ann.get("points") == points  # the prompts stay in the output for the next round
        return ann["iou"]

    assert spec.dataset.crop_size == 32  # 16x16 logits, as `features` draws them
    bad = label(None)
    click = [[40.5, 32.5, 1]]
    assert bad < 0.6
    assert label(click, refine=False, spread=False) < bad + 0.02
    assert label(click, spread=False) > 0.85  # the key fit alone
    assert label(click, refine=False) > 0.85  # the region turned over alone
    assert label(click) > 0.85


@pytest.mark.slow
def test_mal_train_and_mal_inference_take_points_and_scribbles(tiny_data, tmp_path):
    """The real commands on the tiny set: training with clicks on some boxes and a scribble instead of a box on
    one, the prompt loss logged; labeling a json with clicks writes every box, its prompts kept."""
    import csv

    from pycocotools.coco import COCO

    from bench.prompts import with_prompts
    from tests.conftest import TINY, data_args, run_cli

    train = json.loads((tiny_data / "train" / "annotations.json").read_text())
    clicked, scribbled = with_prompts(train, 3), with_prompts(train, "scribble")
    anns = clicked["annotations"]
    anns[0] = scribbled["annotations"][0]
    assert "bbox" not in anns[0] and anns[1]["points"]
    (tmp_path / "train.json").write_text(json.dumps({**train, "annotations": anns}))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"results_dir: {tmp_path / 'run'}\n")
    args = ["-e", str(spec), *TINY, *data_args(tiny_data), f"dataset.train_ann_path={tmp_path / 'train.json'}"]
    done = run_cli("mal", "train", *args, "train.num_epochs=1")
    assert done.returncode == 0, done.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "run" / "train" / "logs" / "metrics.csv").open()))
    assert any(row.get("loss_prompt") for row in rows)
    # trained with prompts, the threshold is chosen on the val set, logged, and kept with the checkpoint
    chosen = [round(float(row["mask_thres"]), 6) for row in rows if row.get("mask_thres")]  # logged as float32
    assert chosen and all(t in GRID for t in chosen)
    latest = torch.load(tmp_path / "run" / "train" / "mal_model_latest.pth", weights_only=False)
    assert latest[CHECKPOINT_KEY] == chosen[-1]

    val = tiny_data / "val" / "annotations.json"
    raw = json.loads(val.read_text())
    (tmp_path / "val.json").write_text(json.dumps(with_prompts(raw, 3)))
    done = run_cli(
        "mal", "inference", *args, f"inference.ann_path={tmp_path / 'val.json'}", f"inference.img_dir={tiny_data / 'val' / 'images'}",
        f"inference.checkpoint={tmp_path / 'run' / 'train' / 'mal_model_latest.pth'}", "inference.label_dump_path=labels.json",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"binarising at mask_thres {chosen[-1]:g}" in done.stderr
    labels = json.loads((tmp_path / "run" / "inference" / "labels.json").read_text())
    assert [a["id"] for a in labels["annotations"]] == [a["id"] for a in raw["annotations"]]
    assert all(a["points"] for a in labels["annotations"])
    assert len(COCO(str(tmp_path / "run" / "inference" / "labels.json")).getAnnIds()) == len(raw["annotations"])
