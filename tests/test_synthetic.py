from collections import Counter

import numpy as np
import pytest
from pycocotools.coco import COCO

from mal.data import train_instances
from mal.metrics import area_bucket
from mal.synthetic import CATEGORIES, write_demo_dataset
from plumbing.coco import gt_mask, load_coco


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return out, write_demo_dataset(out, seed=0)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_byte_identical_files_and_another_seed_differs(tmp_path):
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        write_demo_dataset(tmp_path / name, seed=seed, num_train=3, num_val=2, image_size=96)
    first, second, other = (_files(tmp_path / name) for name in "abc")
    assert first == second
    assert first.keys() == other.keys() and first != other
    assert len([p for p in first if p.suffix == ".png"]) == 5


def test_layout_and_counts(demo):
    out, summary = demo
    assert set(summary) == {
        "train_images",
        "train_instances",
        "val_images",
        "val_instances",
        "box_fill_miou_val",
    }
    for split in ("train", "val"):
        coco = load_coco(
            str(out / split / "annotations.json"), str(out / split / "images"), check_images=True
        )
        assert len(coco.images) == summary[f"{split}_images"]
        assert len(coco.anns) == summary[f"{split}_instances"]
        assert [c["name"] for c in coco.categories.values()] == list(CATEGORIES)
    assert 200 <= summary["train_instances"] <= 320


def test_masks_are_non_rectangular_and_boxes_are_tight(demo):
    out, summary = demo
    assert 0.45 < summary["box_fill_miou_val"] < 0.8
    coco = load_coco(str(out / "val" / "annotations.json"))
    for ann in coco.anns:
        image = coco.images[ann["image_id"]]
        mask = gt_mask(ann, image["height"], image["width"])
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x, y, x + w, y + h)
        assert ann["area"] == mask.sum() and ann["iscrowd"] == 0


def test_size_buckets_and_default_filter(demo):
    out, _ = demo
    val = load_coco(str(out / "val" / "annotations.json"))
    assert set(Counter(area_bucket(a["bbox"][2] * a["bbox"][3]) for a in val.anns)) == {
        "small",
        "medium",
        "large",
    }
    train = load_coco(str(out / "train" / "annotations.json"))
    kept, skipped = train_instances(train, 2048, 1e10)
    assert len(kept) > 2 * skipped  # most training boxes survive the default min_obj_size


def test_pycocotools_reads_the_json(demo):
    out, _ = demo
    coco = COCO(str(out / "val" / "annotations.json"))
    ann = coco.loadAnns(coco.getAnnIds())[0]
    assert coco.annToMask(ann).sum() == ann["area"]


def test_objects_are_vivid_and_backgrounds_muted(demo):
    """The appearance statistics box supervision learns from: things stand out from stuff."""
    from PIL import Image

    out, _ = demo
    coco = load_coco(str(out / "val" / "annotations.json"))
    for image_id, image in coco.images.items():
        hsv = np.asarray(Image.open(out / "val" / "images" / image["file_name"]).convert("HSV"), np.float32)
        objects = np.zeros(hsv.shape[:2], bool)
        for ann in coco.anns:
            if ann["image_id"] == image_id:
                objects |= gt_mask(ann, image["height"], image["width"]).astype(bool)
        assert np.median(hsv[..., 1][objects]) > 1.5 * np.median(hsv[..., 1][~objects])
