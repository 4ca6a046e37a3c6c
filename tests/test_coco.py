import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mal.errors import UserError
from plumbing.coco import gt_mask, load_coco

TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-coco"

VALID = {
    "images": [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "sub/b.png", "width": 40, "height": 30},
    ],
    "annotations": [
        {"id": 10, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 8], "iscrowd": 0},
        {"id": 11, "image_id": 2, "category_id": 7, "bbox": [-0.5, 0, 40.9, 30], "iscrowd": 0},
    ],
    "categories": [{"id": 7, "name": "thing"}],
}


def _write(tmp_path: Path, data, name: str = "ann.json") -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _mutated(section: str, index: int, **changes) -> dict:
    data = copy.deepcopy(VALID)
    data[section][index].update(changes)
    return data


def test_valid_file_loads_and_indexes(tmp_path):
    coco = load_coco(_write(tmp_path, VALID), str(tmp_path))
    assert set(coco.images) == {1, 2} and set(coco.categories) == {7}
    assert [a["id"] for a in coco.anns] == [10, 11]
    assert coco.image_path(2) == tmp_path / "sub" / "b.png"
    assert coco.raw["categories"][0]["name"] == "thing"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "not a COCO instance file"),
        ({"images": [], "categories": []}, "'annotations' list is missing"),
        ({**VALID, "images": VALID["images"] + [dict(VALID["images"][0])]}, "duplicate image id 1"),
        (
            {**VALID, "annotations": VALID["annotations"] + [dict(VALID["annotations"][0])]},
            "duplicate annotation id 10",
        ),
        (_mutated("annotations", 0, image_id=99), "annotation 10 refers to unknown image_id 99"),
        (_mutated("annotations", 1, category_id=3), "annotation 11 refers to unknown category_id 3"),
        (_mutated("annotations", 0, bbox=[1, 2, 3]), "annotation 10 bbox [1, 2, 3] is not 4 finite numbers"),
        (_mutated("annotations", 0, bbox=[1, 2, "3", 4]), "is not 4 finite numbers"),
        (
            _mutated("annotations", 0, bbox=[1, 2, 0, 4]),
            "annotation 10 bbox [1, 2, 0, 4] has width or height <= 0",
        ),
        (
            _mutated("annotations", 1, bbox=[30, 5, 12, 5]),
            "annotation 11 bbox [30, 5, 12, 5] lies outside image 2",
        ),
        (_mutated("annotations", 0, bbox=[-1.5, 0, 5, 5]), "lies outside image 1 (40x30)"),
        (_mutated("images", 0, file_name="../secret.png"), "image id 1 file_name '../secret.png' escapes"),
        (_mutated("images", 1, file_name="/etc/b.png"), "image id 2 file_name '/etc/b.png' escapes"),
        (_mutated("images", 0, width=0), "image id 1 needs positive integer width and height"),
    ],
)
def test_invalid_files_fail_with_one_line_naming_file_and_culprit(tmp_path, data, expected):
    path = _write(tmp_path, data)
    with pytest.raises(UserError) as err:
        load_coco(path)
    message = str(err.value)
    assert expected in message
    assert message.startswith(path)
    assert "\n" not in message


def test_nan_bbox_is_rejected(tmp_path):
    text = json.dumps(VALID).replace("[2, 3, 10, 8]", "[2, 3, NaN, 8]")
    with pytest.raises(UserError, match="annotation 10 bbox .* is not 4 finite numbers"):
        load_coco(_write(tmp_path, text))


def test_check_images_names_first_missing_file_and_count(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (40, 30)).save(tmp_path / "sub" / "b.png")  # images are checked by header: real ones
    path = _write(tmp_path, VALID)
    with pytest.raises(
        UserError, match=r"a\.png \(image id 1\) not found; 1 of 2 annotated images are missing"
    ):
        load_coco(path, str(tmp_path), check_images=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    assert load_coco(path, str(tmp_path), check_images=True).image_root == tmp_path


def test_missing_image_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="image folder not found"):
        load_coco(_write(tmp_path, VALID), str(tmp_path / "nope"))


def test_gt_mask_polygon_fills_the_square():
    ann = {"id": 1, "segmentation": [[2, 2, 12, 2, 12, 8, 2, 8], [0, 0, 1, 1]]}  # degenerate part ignored
    mask = gt_mask(ann, 10, 20)
    assert mask.dtype == np.uint8 and mask.shape == (10, 20)
    assert mask[3:8, 3:12].all() and mask.sum() == pytest.approx(60, abs=12)
    assert not mask[:, 14:].any()


def test_gt_mask_compressed_rle_round_trips():
    truth = np.zeros((9, 11), np.uint8)
    truth[2:5, 3:9] = 1
    rle = mask_utils.encode(np.asfortranarray(truth))
    ann = {"id": 1, "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}}
    np.testing.assert_array_equal(gt_mask(ann, 9, 11), truth)


def test_gt_mask_none_without_segmentation_and_rejects_wrong_size():
    assert gt_mask({"id": 1}, 5, 5) is None
    assert gt_mask({"id": 1, "segmentation": []}, 5, 5) is None
    rle = mask_utils.encode(np.asfortranarray(np.ones((4, 4), np.uint8)))
    with pytest.raises(UserError, match="annotation 3: segmentation size"):
        gt_mask({"id": 3, "segmentation": rle}, 5, 5)


def test_gt_mask_matches_pycocotools_on_tiny_coco_including_crowd_rle():
    ann_path = str(TINY / "annotations.json")
    coco = load_coco(ann_path, str(TINY / "images"), check_images=True)
    reference = COCO(ann_path)
    crowd = [a for a in coco.anns if a.get("iscrowd")]
    assert len(crowd) == 1 and isinstance(crowd[0]["segmentation"]["counts"], list)
    for ann in crowd + coco.anns[:5]:
        image = coco.images[ann["image_id"]]
        mask = gt_mask(ann, image["height"], image["width"])
        assert mask.any()
        np.testing.assert_array_equal(mask, reference.annToMask(ann))
