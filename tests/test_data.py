import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mal.data.datasets as datasets
import mal.data.images as images
import mal.data.sampler as sampler_module
from mal.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EpochSampler,
    MALEvalDataset,
    MALTrainDataset,
    box_fill_miou,
    collate,
    crop_box_mask,
    crop_wrap,
    eval_instances,
    eval_margins,
    expand_box,
    train_instances,
    train_margins,
)
from mal.errors import UserError
from plumbing.coco import load_coco

torch.set_num_threads(1)
TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "tiny-coco"


@pytest.fixture
def coco(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {
        1: rng.integers(0, 256, (40, 40, 3), dtype=np.uint8),
        2: rng.integers(0, 256, (32, 48, 3), dtype=np.uint8),
    }
    for iid, array in pixels.items():
        Image.fromarray(array).save(tmp_path / f"{iid}.png")
    ann = {
        "images": [
            {"id": iid, "file_name": f"{iid}.png", "width": a.shape[1], "height": a.shape[0]}
            for iid, a in pixels.items()
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 10, 20, 20], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [15, 5, 20, 25], "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [5, 5, 30, 20], "iscrowd": 0},
            {"id": 4, "image_id": 2, "category_id": 1, "bbox": [5, 5, 2, 20], "iscrowd": 0},
            {"id": 5, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 30], "iscrowd": 1},
        ],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    result = load_coco(str(tmp_path / "ann.json"), str(tmp_path))
    result.pixels = pixels
    return result


def _unnormalize(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return ((image * std + mean) * 255).round()


def test_instance_filters(coco):
    kept, skipped = train_instances(coco, 100, 1e10)
    assert [a["id"] for a in kept] == [1, 2, 3]  # 4 is 2 px wide, 5 is a crowd
    assert skipped == 2
    assert [a["id"] for a in train_instances(coco, 450, 550)[0]] == [2]  # 20x25 = 500
    assert len(eval_instances(coco)) == 5


def test_expand_box_matches_hand_computation():
    # centre (20, 40); sides pushed out by 1.5x; +1 on x1/y1
    assert expand_box((10, 20, 30, 60), (0.5, 0.5, 0.5, 0.5)) == (5, 10, 36, 71)
    assert expand_box((10.2, 20.7, 30.1, 60.3), (0, 0, 0, 0)) == (10, 20, 32, 62)
    # asymmetric: left 1.0 -> x0 = 20 - 10*2 = 0; bottom 0.25 -> y1 = 40 + 20*1.25 + 1 = 66
    assert expand_box((10, 20, 30, 60), (1.0, 0.0, 0.0, 0.25)) == (0, 20, 31, 66)


def test_margins():
    rng = np.random.default_rng(3)
    m = train_margins(rng, (1.0, 1.0))  # fixed scale: gates only split it between opposite sides
    assert m[0] + m[2] == pytest.approx(1.0) and m[1] + m[3] == pytest.approx(1.0)
    assert (train_margins(rng, (0.0, 1.2)) <= 1.2).all()
    np.testing.assert_allclose(eval_margins((0.6, 0.6)), [0.3] * 4)


def test_crop_wrap_takes_pixels_from_the_opposite_side():
    image = np.arange(4 * 6).reshape(4, 6)
    crop = crop_wrap(image, (-2, 1, 3, 5))
    np.testing.assert_array_equal(crop[:3, :2], image[1:4, 4:6])  # left of the image: right-edge columns
    np.testing.assert_array_equal(crop[:3, 2:], image[1:4, 0:3])
    np.testing.assert_array_equal(crop[3], image[0].take(np.arange(-2, 3), mode="wrap"))  # below: top row


def test_eval_item_wraps_image_but_box_mask_covers_only_the_box(coco):
    # box x 0..20, y 10..30; 1.3x test crop -> ext box (-3, 7, 24, 34), 27 px: crop_size 27 is an identity resize
    ds = MALEvalDataset(coco, eval_instances(coco), 27, (0.6, 0.6))
    item = ds[0]
    assert item["ext_box"].tolist() == [-3, 7, 24, 34]
    pixels = coco.pixels[1]
    image = _unnormalize(item["image"]).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(image[:, :3], pixels[7:34, 37:40], atol=1)  # wrapped from the right edge
    expected = np.zeros((27, 27), np.float32)
    expected[3:23, 3:23] = 1
    np.testing.assert_array_equal(item["boxmask"][0].numpy(), expected)


def test_box_mask_ignores_box_pixels_wrapped_in_from_the_other_side():
    # image 22 px wide, box on columns 0..19; crop columns 22 and 23 wrap onto box columns 0 and 1
    mask = crop_box_mask([0, 10, 20, 20], (-3, 7, 24, 34), (40, 22), 27)
    np.testing.assert_array_equal(mask[10], [0] * 3 + [1] * 20 + [0] * 4)
    # resizing samples the nearest crop pixel: 54 px output repeats each crop column twice
    assert mask.sum() * 4 == crop_box_mask([0, 10, 20, 20], (-3, 7, 24, 34), (40, 22), 54).sum()


def test_eval_item_fields(coco):
    item = MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6))[2]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert item["boxmask"].shape == (1, 16, 16)
    assert item["box_area"].item() == 600.0
    assert item["bbox"].tolist() == [5, 5, 30, 20]
    assert (item["ann_id"].item(), item["image_id"].item(), item["category_id"].item()) == (3, 2, 1)
    assert item["image_hw"].tolist() == [32, 48] and item["image_hw"].dtype == torch.int64


def test_train_items_reproducible_per_seed_epoch_index(coco):
    instances = train_instances(coco, 100, 1e10)[0]
    first = MALTrainDataset(coco, instances, 24, (0, 1.2), seed=5)
    second = MALTrainDataset(coco, instances, 24, (0, 1.2), seed=5)
    a, b = first[1], second[1]
    for key in ("image", "timage", "boxmask", "box_area"):
        assert torch.equal(a[key], b[key])
    second.set_epoch(1)
    assert not torch.equal(second[1]["timage"], a["timage"])
    assert a["boxmask"].shape == (1, 24, 24) and a["box_area"].item() == 500.0


def test_teacher_view_is_the_student_crop_without_colour_augmentation(coco, monkeypatch):
    monkeypatch.setattr(datasets, "colour_augment", lambda image, rng: 255 - image)
    ds = MALTrainDataset(coco, train_instances(coco, 100, 1e10)[0], 24, (0, 1.2), seed=1)
    for index in range(3):
        item = ds[index]
        torch.testing.assert_close(
            _unnormalize(item["image"]), 255 - _unnormalize(item["timage"]), atol=1e-3, rtol=0
        )


def test_colour_augmentation_changes_the_student_view(coco):
    ds = MALTrainDataset(coco, train_instances(coco, 100, 1e10)[0], 24, (0, 1.2), seed=1)
    changed = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        changed += [not torch.equal(item["image"], item["timage"]) for item in ds.__getitems__([0, 1, 2])]
    assert any(changed) and not all(changed)  # jitter p=0.5, grey p=0.2, blur p=0.5: some views stay clean


def test_getitems_decodes_each_image_once_per_batch(coco, monkeypatch):
    calls = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda path: calls.append(path) or real(path))
    monkeypatch.setattr(images, "IMAGE_CACHE", images.ImageCache(max_bytes=0))
    ds = MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6))
    batch = ds.__getitems__([0, 1])  # two boxes of image 1
    assert len(batch) == 2 and len(calls) == 1
    ds.__getitems__([0, 2, 1])
    assert len(calls) == 3


def test_decoded_images_are_shared_across_datasets_until_the_file_changes(coco, monkeypatch):
    calls = []
    real = images.decode_image
    monkeypatch.setattr(images, "decode_image", lambda path: calls.append(path) or real(path))
    monkeypatch.setattr(images, "IMAGE_CACHE", images.ImageCache(max_bytes=2**24))
    MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6)).__getitems__([0])
    MALEvalDataset(coco, eval_instances(coco), 32, (0.6, 0.6)).__getitems__([0, 1])  # another trial's dataset
    assert len(calls) == 1
    path = Path(coco.image_path(coco.anns[0]["image_id"]))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6)).__getitems__([0])
    assert len(calls) == 2
    one = images.IMAGE_CACHE._images[next(iter(images.IMAGE_CACHE._images))].nbytes
    small = images.ImageCache(max_bytes=one)
    monkeypatch.setattr(images, "IMAGE_CACHE", small)
    MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6)).__getitems__([0, 2])
    assert small.bytes <= one and len(small._images) == 1  # the budget holds: the older image left


def test_collate_stacks_and_works_with_dataloader(coco):
    ds = MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 16, 16)
    assert batch["ext_box"].shape == (4, 4) and batch["ann_id"].tolist() == [1, 2, 3, 4]


def test_image_size_mismatch_is_a_user_error(coco):
    coco.images[2]["width"] = 50
    ds = MALEvalDataset(coco, eval_instances(coco), 16, (0.6, 0.6))
    with pytest.raises(UserError, match="2.png: image is 48x32 but its annotations say 50x32"):
        ds[2]


def test_sampler_order_is_seeded_per_epoch():
    sampler = EpochSampler(20, seed=3)
    epoch0 = list(sampler)
    assert sorted(epoch0) == list(range(20)) and epoch0 == list(EpochSampler(20, seed=3))
    sampler.set_epoch(1)
    assert list(sampler) != epoch0
    assert list(EpochSampler(5, seed=3, shuffle=False)) == [0, 1, 2, 3, 4]


def test_sampler_resume_skips_exactly_the_consumed_samples():
    sampler = EpochSampler(20, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.consumed = 7  # what ResumableLoader.mark_batches_done records
    resumed = EpochSampler(20, seed=3)
    resumed.load_state_dict(sampler.state_dict())
    resumed.set_epoch(2)  # Lightning re-announces the running epoch on resume
    assert list(resumed) == full[7:]
    assert len(resumed) == 20
    resumed.set_epoch(3)
    assert sorted(resumed) == list(range(20))


@pytest.mark.parametrize("pad", [True, False])
def test_sampler_shards_the_epoch_over_ranks(monkeypatch, pad):
    full = list(EpochSampler(10, seed=3))
    shares = []
    for rank in range(4):
        monkeypatch.setattr(sampler_module, "rank_and_world", lambda rank=rank: (rank, 4))
        shares.append(list(EpochSampler(10, seed=3, pad=pad)))
    assert sorted(i for share in shares for i in share[:2]) == sorted(full[:8])
    if pad:  # equal steps on every rank: two ranks repeat the epoch's first samples
        assert [len(s) for s in shares] == [3, 3, 3, 3] and shares[2][2] == full[0]
    else:
        assert [len(s) for s in shares] == [3, 3, 2, 2]
    assert set().union(*shares) == set(range(10))


def test_box_fill_miou_matches_the_published_tiny_coco_baseline():
    coco = load_coco(str(TINY / "annotations.json"))
    assert box_fill_miou(coco) == pytest.approx(0.563, abs=0.001)  # shared/data/README.md
