"""The quality benchmark's baselines and statistics (bench/baselines.py, bench/quality.py): each method
does what its name says on a picture whose answer is known, and the paired interval is the paired one."""

from __future__ import annotations

import numpy as np

from bench.baselines import _inside_box, _u2netp_session, grabcut, u2netp
from bench.quality import paired_bootstrap
from mal.data import box_mask
from mal.metrics import mask_iou


def _disc_picture(size: int = 96, radius: int = 20) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """A red disc on a noisy grey background, and a box with a margin around the disc."""
    rng = np.random.default_rng(0)
    image = (120 + 10 * rng.standard_normal((size, size, 3))).clip(0, 255).astype(np.uint8)
    ys, xs = np.mgrid[:size, :size]
    disc = ((ys - size / 2) ** 2 + (xs - size / 2) ** 2 <= radius**2).astype(np.uint8)
    image[disc == 1] = (220, 30, 30)
    c = size / 2
    return image, disc, [c - radius - 6, c - radius - 6, 2 * radius + 12, 2 * radius + 12]


def test_grabcut_carves_the_object_out_of_its_box():
    image, disc, bbox = _disc_picture()
    mask, fell_back = grabcut(image, bbox)
    box = box_mask(bbox, image.shape[:2])
    assert not fell_back
    assert mask_iou(mask, disc) > 0.9 > mask_iou(box, disc) + 0.1
    assert (mask & ~box.astype(bool)).sum() == 0


def test_u2netp_from_its_wheel_finds_the_salient_object_in_its_box():
    image, disc, bbox = _disc_picture()
    mask, fell_back = u2netp(image, bbox, _u2netp_session())
    assert not fell_back
    assert mask_iou(mask, disc) > mask_iou(box_mask(bbox, image.shape[:2]), disc) + 0.1


def test_a_method_that_keeps_almost_nothing_falls_back_to_the_box():
    hw, bbox = (40, 40), [10, 10, 20, 20]
    speck = np.zeros(hw, np.uint8)
    speck[15, 15] = 1
    mask, fell_back = _inside_box(speck, (0, 0, 40, 40), bbox, hw)
    assert fell_back and np.array_equal(mask, box_mask(bbox, hw))
    half = np.zeros(hw, np.uint8)
    half[10:30, 10:20] = 1
    mask, fell_back = _inside_box(half, (0, 0, 40, 40), bbox, hw)
    assert not fell_back and mask.sum() == 200


def _records(ious: list[float], categories: list[int]) -> list[dict]:
    return [{"ann": {"id": i, "category_id": c}, "iou": v} for i, (v, c) in enumerate(zip(ious, categories, strict=True))]


def test_paired_bootstrap_interval_is_around_the_paired_difference():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.8, 200)
    categories = list(rng.integers(1, 5, 200))
    better = _records(list(base + 0.05 + rng.normal(0, 0.01, 200)), categories)
    same = paired_bootstrap(_records(list(base), categories), _records(list(base), categories), 200)
    assert same == {"difference": 0.0, "low": 0.0, "high": 0.0}
    gap = paired_bootstrap(better, _records(list(base), categories), 500)
    # Paired: the per-box spread of the IoUs (0.3 to 0.8) cancels, only the 0.01 noise is left.
    assert 0.04 < gap["low"] < gap["difference"] < gap["high"] < 0.06
