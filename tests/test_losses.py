"""MAL's losses: Dice, MIL box projections, the mean-field CRF, weights, ramps and numerical safety."""

from __future__ import annotations

import pytest
import torch

from mal.losses import dice_loss, loss_ramp, mal_losses, mean_field_pseudo_labels, mil_loss
from mal.spec import TrainConfig

torch.set_num_threads(1)

RED = torch.tensor([2.2, -2.0, -1.8])  # ImageNet-normalised pure red and blue
BLUE = torch.tensor([-2.1, -2.0, 2.6])


def _box(size: int, inset: int) -> torch.Tensor:
    box = torch.zeros(1, 1, size, size)
    box[..., inset : size - inset, inset : size - inset] = 1
    return box


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / ((a + b) > 0).sum())


def _crf(image: torch.Tensor, probs: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    return mean_field_pseudo_labels(
        image, probs, box, kernel_size=3, zeta=0.1, num_iter=100, low=0.1, high=0.9
    )


def test_dice_is_bounded_and_zero_for_identical_masks():
    g = torch.Generator().manual_seed(0)
    p, t = torch.rand(6, 1, 8, 8, generator=g), torch.rand(6, 1, 8, 8, generator=g)
    loss = dice_loss(p, t)
    assert loss.shape == (6,) and (loss >= 0).all() and (loss <= 1).all()
    mask = (t > 0.5).float()
    assert dice_loss(mask, mask).abs().max() < 1e-3
    assert dice_loss(mask, 1 - mask).min() > 0.99


def test_mil_is_zero_on_the_box_projections_and_large_when_empty():
    box = torch.zeros(2, 1, 16, 16)
    box[..., 4:12, 3:10] = 1
    assert mil_loss(box, box).abs().max() < 1e-3
    # A thin diagonal through the box has the box's row/column projections, so it is just as good a bag.
    diagonal = torch.zeros_like(box)
    for i in range(8):
        diagonal[..., 4 + i, 3 + min(i, 6)] = 1
    assert mil_loss(diagonal, box).abs().max() < 1e-3
    assert mil_loss(torch.zeros_like(box), box).min() > 0.3
    # Object leaking outside the box (negative bags) is penalised.
    assert mil_loss(torch.ones_like(box), box).min() > 0.05


def test_crf_moves_a_coarse_mask_to_the_colour_edge():
    size = 32
    image = torch.empty(1, 3, size, size)
    image[..., : size // 2] = RED[:, None, None]
    image[..., size // 2 :] = BLUE[:, None, None]
    box = _box(size, inset=2)  # covers both colours
    init = torch.zeros_like(box)
    init[..., : round(0.6 * size)] = 1
    init = init * box
    truth = torch.zeros_like(box)
    truth[..., : size // 2] = 1
    truth = truth * box

    refined = _crf(image, init, box)
    assert set(refined.unique().tolist()) <= {0.0, 1.0}
    assert (refined <= box).all()  # never outside the box
    assert _iou(refined, truth) > _iou(init, truth) + 0.1
    # The same mask on a flat image does not move toward the middle: the colours do the work.
    flat = _crf(torch.zeros_like(image), init, box)
    assert _iou(flat, truth) <= _iou(init, truth)


def test_crf_keeps_a_confident_full_box_mask_up_to_the_image_border():
    # Out-of-image taps must not vote for background, or the corners would erode.
    image = torch.randn(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 0.01
    full = torch.ones(1, 1, 12, 12)
    assert torch.equal(_crf(image, full, full), full)
    assert torch.equal(_crf(image, torch.zeros_like(full), full), torch.zeros_like(full))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_no_nan_under_cpu_autocast_for_constant_inputs(dtype, value):
    cfg = TrainConfig(crf_num_iter=5)
    full = torch.full((2, 1, 8, 8), value)
    logits = torch.full((2, 1, 8, 8), 30.0 if value else -30.0, requires_grad=True)
    with torch.autocast("cpu", dtype=dtype):
        pseudo = mean_field_pseudo_labels(torch.full((2, 3, 8, 8), value), full, full, 3, 0.1, 5, 0.1, 0.9)
        out = mal_losses(
            logits, logits.detach(), torch.full((2, 3, 32, 32), value), full, cfg, step=10, epoch=1
        )
    assert torch.isfinite(pseudo).all()
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in out.values())
    out["loss"].backward()
    assert torch.isfinite(logits.grad).all()


def _inputs(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)
    teacher = torch.randn(2, 1, 8, 8, generator=g, requires_grad=True)
    image = torch.randn(2, 3, 32, 32, generator=g)
    box = _box(32, inset=6).expand(2, 1, 32, 32)
    return student, teacher, image, box


def test_loss_weights_are_honoured():
    student, teacher, image, box = _inputs()

    def losses(**weights: float) -> dict[str, torch.Tensor]:
        cfg = TrainConfig(crf_num_iter=5, **weights)
        return mal_losses(student, teacher, image, box, cfg, step=0, epoch=1)

    both = losses(loss_mil_weight=4, loss_crf_weight=0.5)
    assert both["loss_mil"] > 0 and both["loss_crf"] > 0
    assert torch.allclose(both["loss"], 4 * both["loss_mil"] + 0.5 * both["loss_crf"])
    assert torch.allclose(losses(loss_mil_weight=0, loss_crf_weight=0.5)["loss"], 0.5 * both["loss_crf"])
    assert torch.allclose(losses(loss_mil_weight=4, loss_crf_weight=0)["loss"], 4 * both["loss_mil"])
    assert losses(loss_mil_weight=0, loss_crf_weight=0)["loss"] == 0


def test_ramps_scale_the_first_epoch_only():
    assert loss_ramp(0, 0, 1000) == 0.0
    assert loss_ramp(250, 0, 1000) == 0.25
    assert loss_ramp(5000, 0, 1000) == 1.0
    assert loss_ramp(0, 1, 1000) == 1.0
    assert loss_ramp(0, 0, 0) == 1.0

    student, teacher, image, box = _inputs()
    cfg = TrainConfig(crf_num_iter=5, loss_mil_step=100, loss_crf_step=400)
    out = mal_losses(student, teacher, image, box, cfg, step=50, epoch=0)
    expected = 4 * 0.5 * out["loss_mil"] + 0.5 * 0.125 * out["loss_crf"]
    assert torch.allclose(out["loss"], expected)


def test_gradients_flow_only_through_the_student():
    student, teacher, image, box = _inputs()
    mal_losses(student, teacher, image, box, TrainConfig(crf_num_iter=5), step=0, epoch=1)["loss"].backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_crf_size_ratio_changes_the_crf_resolution_not_the_mil_term():
    student, teacher, image, box = _inputs()
    base = mal_losses(student, teacher, image, box, TrainConfig(crf_num_iter=5), step=0, epoch=1)
    finer = mal_losses(
        student, teacher, image, box, TrainConfig(crf_num_iter=5, crf_size_ratio=2), step=0, epoch=1
    )
    assert torch.equal(base["loss_mil"], finer["loss_mil"])
    assert not torch.equal(base["loss_crf"], finer["loss_crf"])


def _disc(size: int, radius: float) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    return (((ys - centre) ** 2 + (xs - centre) ** 2) <= radius**2).float()[None, None]


def _levels_of(region: torch.Tensor, sizes: tuple[int, ...], noise: float = 0.05) -> list[torch.Tensor]:
    """Encoder-like pyramid levels: one feature vector on the region, another elsewhere, some noise."""
    torch.manual_seed(0)
    inside, outside = torch.randn(8), torch.randn(8)
    levels = []
    for s in sizes:
        r = torch.nn.functional.interpolate(region, size=(s, s), mode="area")
        f = r * inside[None, :, None, None] + (1 - r) * outside[None, :, None, None]
        levels.append(f + noise * torch.randn_like(f))
    return levels


def test_feature_affinity_finds_the_object_whose_features_differ_from_the_ring():
    from mal.losses import feature_affinity_labels

    disc, box = _disc(32, 9), _box(32, 5)  # a disc inside a box with a margin: the corners are background
    labels = feature_affinity_labels(_levels_of(disc, (16, 8, 4)), box, box)
    assert _iou(labels, disc) > 0.85 > _iou(box, disc)
    assert labels[box == 0].sum() == 0  # never outside the box


def test_feature_affinity_falls_back_to_the_box_when_the_features_see_nothing():
    from mal.losses import feature_affinity_labels

    box = _box(32, 5)
    flat = [torch.ones(1, 8, s, s) for s in (16, 8)]  # the object looks like its ring
    assert torch.equal(feature_affinity_labels(flat, box, box), box)


def test_the_affinity_term_is_added_with_its_weight_and_only_with_teacher_features():
    student, teacher, image, box = _inputs()
    levels = [f.expand(2, -1, -1, -1) for f in _levels_of(_disc(32, 8), (8, 4))]
    with_term = mal_losses(student, teacher, image, box, TrainConfig(crf_num_iter=5, loss_aff_weight=2), 0, 1, levels)
    without = mal_losses(student, teacher, image, box, TrainConfig(crf_num_iter=5), 0, 1, levels)
    assert with_term["loss_aff"] > 0 and "loss_aff" not in without
    assert torch.allclose(with_term["loss"], without["loss"] + 2 * with_term["loss_aff"])
    no_levels = mal_losses(student, teacher, image, box, TrainConfig(crf_num_iter=5, loss_aff_weight=2), 0, 1)
    assert "loss_aff" not in no_levels
