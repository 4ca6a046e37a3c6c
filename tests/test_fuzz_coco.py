"""Fuzzing COCO files: one value of the valid base file (tests/bad_inputs/good/annotations.json, and the same
with points and scribbles) replaced, removed or added at a random place. Either the file is refused with one
UserError line when it is read, or everything that reads its values later (train and eval crops, prompt maps,
GT masks, box-fill, mIoU and mask AP) works."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from mal.data import MALEvalDataset, MALTrainDataset, eval_instances, train_instances
from mal.data.baseline import box_fill_miou
from mal.data.crops import box_mask
from mal.data.prompts import region_prompt_maps
from mal.errors import UserError
from mal.metrics import coco_mask_ap
from plumbing.coco import gt_mask, load_coco

GOOD = Path(__file__).parent / "bad_inputs" / "good"
BASE = json.loads((GOOD / "annotations.json").read_text())
# one of each value class: null, bool, string, float where an int belongs, beyond int64, huge and tiny
# numbers, non-finite floats, empty and nested containers, degenerate polygons, RLE-shaped objects
HOSTILE = [
    None, True, False, "", "1", "no", 0, -1, 1, 2, 0.5, 1e-300, 96.0, 2**31, 2**63, 2**70, -(2**70), 10**30,
    1e308, math.nan, math.inf, -math.inf, [], {}, [[]], [1, 2], [1, 2, 3, 4], [[1, 2, 3, 4]], [[1, 2, 3, 4, 5]],
    [[0, 0, 10**30, 0, 0, 10]], [[0, 0, 5, 0, 0, 5]], {"counts": "", "size": [80, 96]},
    {"counts": [7680], "size": [80, 96]}, {"counts": [7680], "size": [80.0, 96.0]}, [[[[[]]]]],
]  # fmt: skip
ACTIONS = ("replace", "replace", "replace", "delete", "add")
OPTIONAL_KEYS = ("area", "iscrowd", "segmentation", "score", "width", "id", "bbox", "image_id", "points", "scribbles")


def _places(node, path=()):
    """Every (container path, key or index) in the document."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        yield path, key
        yield from _places(child, (*path, key))


PLACES = list(_places(BASE))
# the base with prompts: clicks on box 1, a scribble instead of box 3's bbox; and the places inside them
PROMPTED = copy.deepcopy(BASE)
PROMPTED["annotations"][0]["points"] = [[20, 30, 1], [10, 12, 0]]
PROMPTED["annotations"][2]["scribbles"] = [[40, 20, 60, 22], [70, 30]]
del PROMPTED["annotations"][2]["bbox"]
PROMPT_PLACES = [(path, leaf) for path, leaf in _places(PROMPTED) if {"points", "scribbles"} & {*path, leaf}]


def _mutated(place: int, action: str, value, key: str, base: dict = BASE, places: list = PLACES) -> dict:
    doc = copy.deepcopy(base)
    path, leaf = places[place]
    parent = doc
    for part in path:
        parent = parent[part]
    if action == "delete":
        del parent[leaf]
    elif action == "add" and isinstance(parent, dict):
        parent[key] = value
    elif action == "add":
        parent.insert(leaf, value)
    else:
        parent[leaf] = value
    return doc


def _use_everything(coco) -> None:
    """What training, evaluation and the baseline read from a loaded file."""
    kept, _ = train_instances(coco, 0.0, 1e10)
    if kept:
        train = MALTrainDataset(coco, kept, 32, (0.0, 0.1), 0)
        train[0]
    evaluated = eval_instances(coco)
    if evaluated:
        MALEvalDataset(coco, evaluated, 32, (0.1, 0.1))[0]
    box_fill_miou(coco)
    detections = []
    for ann in coco.anns:
        image = coco.images[ann["image_id"]]
        hw = (image["height"], image["width"])
        region_prompt_maps(ann, (0, hw[0], 0, hw[1]))  # what forcing the prompts at inference reads
        if gt_mask(ann, *hw) is None or ann.get("iscrowd"):
            continue
        rle = mask_utils.encode(np.asfortranarray(box_mask(ann["bbox"], hw).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        detections.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle, "score": 1.0})
    coco_mask_ap(coco.raw, detections)


def _one_line_or_works(doc, tmp_path: Path) -> None:
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    try:
        coco = load_coco(str(path), str(GOOD / "images"), check_images=True)
    except UserError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 500, repr(str(exc))
        return
    _use_everything(coco)


@settings(max_examples=100, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    place=st.integers(0, len(PLACES) - 1),
    action=st.sampled_from(ACTIONS),
    value=st.sampled_from(HOSTILE),
    key=st.sampled_from(OPTIONAL_KEYS),
)
def test_a_mutated_coco_file_is_refused_in_one_line_or_works(place, action, value, key, tmp_path):
    _one_line_or_works(_mutated(place, action, value, key), tmp_path)


@settings(max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    place=st.integers(0, len(PROMPT_PLACES) - 1),
    action=st.sampled_from(ACTIONS),
    value=st.sampled_from(HOSTILE),
    key=st.sampled_from(OPTIONAL_KEYS),
)
def test_a_mutated_prompt_is_refused_in_one_line_or_works(place, action, value, key, tmp_path):
    _one_line_or_works(_mutated(place, action, value, key, PROMPTED, PROMPT_PLACES), tmp_path)


@pytest.mark.parametrize(
    "text, expect",
    [
        ('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
        (json.dumps(BASE).replace('"width": 96', '"width": ' + "9" * 5000, 1), "5000 digits"),
    ],
    ids=["deep-nesting", "5000-digit-number"],
)
def test_unreadable_json_is_one_line(text, expect, tmp_path):
    path = tmp_path / "annotations.json"
    path.write_text(text)
    with pytest.raises(UserError, match=expect) as info:
        load_coco(str(path))
    assert "\n" not in str(info.value)


def test_missing_area_and_iscrowd_and_empty_masks_next_to_real_ones_are_scored(tmp_path):
    """The reasonable readings: `area` is the mask's, `iscrowd` absent is 0, an annotation without a mask is
    not scored. Box-fill detections then score as they do on the full file for the masks that remain."""
    doc = copy.deepcopy(BASE)
    for ann in doc["annotations"]:
        del ann["area"], ann["iscrowd"]
    doc["annotations"][0]["segmentation"] = []
    doc["annotations"][1]["segmentation"] = None
    _one_line_or_works(doc, tmp_path)
    full, part = [load_coco(str(p)) for p in (GOOD / "annotations.json", tmp_path / "annotations.json")]
    # the mask areas pycocotools would compute stand in for the written ones
    from plumbing.coco import annotation_area

    written = full.anns[2]["area"]
    assert annotation_area(part.anns[2], 80, 96) == pytest.approx(written, rel=0.05)
