"""box_score: how good a box's predicted mask looks from the box and the photo alone, no ground-truth mask.

Two things a box says about its object's mask, each scored in [0, 1] on the test crop:
- projection: the object touches every row and column of a tight box (MIL's constraint), so the mask's
  row and column projections should fill the box's (Dice of the projections);
- edge: the mask's outline should run along the photo's colour edges (what MAL's CRF pulls towards), so the
  colour step across the outline should be larger than the crop's typical step between neighbours.
The score of a box is their product. The filled box has a perfect projection, but its outline is the box
itself, which crosses the background far more than it follows the object: its edge term stays low.
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


def mask_scores(mask: torch.Tensor, image: torch.Tensor, boxmask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-crop box_score and its components for binary masks (N, 1, S, S) on normalised crops (N, 3, S, S)."""
    with torch.autocast(device_type=image.device.type, enabled=False):
        mask, boxmask = mask.float() * boxmask.float(), boxmask.float()
        mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=image.device).view(1, 3, 1, 1)
        rgb = image.float() * std + mean
        projection = projection_fill(mask, boxmask)
        edge = edge_agreement(mask, rgb)
    return {"box_score": projection * edge, "box_projection": projection, "box_edge": edge}


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
