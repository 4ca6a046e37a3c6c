"""box_score: how good a box's predicted mask looks from the box and the photo alone, no ground-truth mask.

The score, `box_score`, asks whether the mask splits the box the way the photo's colours do, GrabCut's
question turned into a measure. On the test crop, the crop outside the box is known background; the mask is
the object's claimed pixels. Two colour histograms, one of each, give every pixel of the box a probability of
being object, p = F(c) / (F(c) + B(c)). The score is the mean agreement of the mask with it over the box: p
where the mask is on, 1 - p where it is off. A filled box claims the background inside the box as object,
whose colours the ring outside the box also holds, so those pixels agree poorly; a mask that leaves object
pixels out disagrees on them, since nothing outside the box looks like them.

Two diagnostics from earlier designs are reported beside it (they rank models worse, see the README):
- projection: the Dice of the mask's row and column projections with the box's (MIL's constraint);
- edge: the colour step across the mask's outline against the crop's typical step between neighbours.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mal.data.crops import IMAGENET_MEAN, IMAGENET_STD
from mal.metrics import area_bucket


def projection_fill(mask: torch.Tensor, boxmask: torch.Tensor) -> torch.Tensor:
    """Per crop, the mean Dice of the mask's row and column projections with the box's; 0 for an empty mask."""
    dices = []
    for dim in (-1, -2):
        m, b = mask.amax(dim).flatten(1), boxmask.amax(dim).flatten(1)
        dices.append(2 * (m * b).sum(1) / (m.sum(1) + b.sum(1)).clamp(min=1e-6))
    return (dices[0] + dices[1]) / 2


def _neighbour_steps(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences between each pixel and its right and lower neighbours: (N, C, H, W-1), (N, C, H-1, W)."""
    return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]


def edge_agreement(mask: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Per crop, b / (a + b): b the mean colour step across the mask's outline, a the mean step between any two
    neighbours of the crop. 0.5 is an outline the photo does not notice, 1 one that lies on sharp edges only;
    an empty (or outline-free) mask scores 0. Scale-free, so no colour bandwidth to tune."""
    outline, everywhere = 0, 0
    crossing, pairs = 0, 0
    for mask_step, colour_step in zip(_neighbour_steps(mask), _neighbour_steps(rgb), strict=True):
        step = colour_step.norm(dim=1, keepdim=True)  # Euclidean RGB distance of the two neighbours
        changed = mask_step.abs()
        outline = outline + (step * changed).flatten(1).sum(1)
        crossing = crossing + changed.flatten(1).sum(1)
        everywhere = everywhere + step.flatten(1).sum(1)
        pairs += step[0].numel()
    across = outline / crossing.clamp(min=1)
    typical = everywhere / pairs
    score = across / (across + typical).clamp(min=1e-6)
    return torch.where(crossing > 0, score, torch.zeros_like(score))


COLOUR_BINS = 8  # per RGB channel: 512 bins, against 10^4 pixels of a 128 px crop
_SMOOTHING = 0.5  # pseudo-count per bin, so a colour seen on one side only is not certain


def _colour_histograms(bins: torch.Tensor, weights: torch.Tensor, count: int) -> torch.Tensor:
    """Per crop, the smoothed normalised histogram of the bin indices (N, P) weighted by (N, P)."""
    counts = torch.zeros(bins.shape[0], count, device=bins.device).scatter_add_(1, bins, weights)
    return (counts + _SMOOTHING) / (counts.sum(1, keepdim=True) + _SMOOTHING * count)


def colour_agreement(mask: torch.Tensor, rgb: torch.Tensor, boxmask: torch.Tensor, levels: int = COLOUR_BINS) -> torch.Tensor:
    """Per crop, the mean over the box of p where the mask is on and 1 - p where it is off, p the object
    probability of the pixel's colour under the mask's histogram against that of the crop outside the box;
    0 for an empty mask."""
    count = levels**3
    q = (rgb.clamp(0, 1 - 1e-6) * levels).long()
    bins = ((q[:, 0] * levels + q[:, 1]) * levels + q[:, 2]).flatten(1)
    inside, on = boxmask.flatten(1), (mask * boxmask).flatten(1)
    objects = _colour_histograms(bins, on, count)
    background = _colour_histograms(bins, 1 - inside, count)
    f, b = objects.gather(1, bins), background.gather(1, bins)
    p = f / (f + b)
    agree = (on * p + (inside - on) * (1 - p)).sum(1) / inside.sum(1).clamp(min=1)
    return torch.where(on.sum(1) > 0, agree, torch.zeros_like(agree))


def mask_scores(mask: torch.Tensor, image: torch.Tensor, boxmask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-crop box_score and its components for binary masks (N, 1, S, S) on normalised crops (N, 3, S, S)."""
    with torch.autocast(device_type=image.device.type, enabled=False):
        mask, boxmask = mask.float() * boxmask.float(), boxmask.float()
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
        rgb = image.float() * std + mean
        scores = {
            "box_score": colour_agreement(mask, rgb, boxmask),
            "box_projection": projection_fill(mask, boxmask),
            "box_edge": edge_agreement(mask, rgb),
        }
    return scores


def predicted_masks(logits: torch.Tensor, box_area: torch.Tensor, thresholds: dict[str, float], size: int) -> torch.Tensor:
    """The binary masks validation keeps, at the crop's size: the same per-size thresholds as paste-back."""
    probs = torch.sigmoid(F.interpolate(logits.float(), size=(size, size), mode="bilinear", align_corners=False))
    cut = torch.tensor([thresholds[area_bucket(float(a))] for a in box_area], device=probs.device).view(-1, 1, 1, 1)
    return (probs > cut).float()


def batch_scores(logits: torch.Tensor, batch: dict[str, torch.Tensor], thresholds: dict[str, float]) -> dict[str, list[float]]:
    """box_score and its components of every crop of a validation batch, as plain floats."""
    image, boxmask = batch["image"], batch["boxmask"]
    masks = predicted_masks(logits, batch["box_area"], thresholds, image.shape[-1])
    return {name: values.tolist() for name, values in mask_scores(masks, image, boxmask).items()}
