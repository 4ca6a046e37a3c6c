"""A click the mask disagrees with turns over the region it falls in, not only its own pixel.

An object click on a pixel the mask leaves out (or a background click on one it keeps) says the network is
wrong there, and most likely on the whole stretch of similar pixels around it. Which stretch is settled by a
geodesic competition (as in GeoS, Criminisi et al., ECCV 2008): on the logits' grid, among the cells on the
click's (wrong) side of the threshold, those nearer to the click than to the evidence for the other answer
change sides. A path's length is the change of the network's mask features (unit-normalised) and of the
photo's colour along it, plus a small cost per step. The evidence against an object click is the background
the mask already has outside the box or on the crop's edge, and the background clicks; against a background
click, the mask's most confident cells (its core) and the object clicks. The reach needs no scale: it
stops where the other evidence is nearer.

The three constants were chosen on coco128-seg train (never val), with a box-trained model's masks and one
or three clicks per box on their largest errors (as `bench/prompts.py` places corrective clicks), and
checked not to lose with its random clicks there.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from mal.losses import label_maps

__all__ = ["spread_prompts"]

STEP_COST = 0.02  # a path across identical cells still has a length
COLOUR_WEIGHT = 1.0 / 3  # per unit of the normalised photo, against the unit-length mask features
CORE_QUANTILE = 0.8  # the object's core: its cells above this quantile of the kept cells' logits
_FLIP_MARGIN = 0.5  # a turned-over cell lies at least this far (in logits) past the threshold


def spread_prompts(
    logits: torch.Tensor, values: torch.Tensor, batch: dict[str, torch.Tensor], threshold_logits: torch.Tensor
) -> torch.Tensor:
    """`logits` (N, 1, h, w) with the region of every disagreeing click turned over; crops without one unchanged.

    `values` (N, C, h, w) are the network's mask features at the logits' size (MALNet.value_maps),
    `threshold_logits` (N,) each crop's binarisation threshold as a logit. A cell turns over by reflection
    about the threshold (plus a margin), so a confidently wrong cell becomes confidently right.
    """
    prompts = batch.get("prompts")
    if prompts is None or not prompts.any():
        return logits
    size = tuple(logits.shape[-2:])
    labels = label_maps(prompts, size)
    inside = F.interpolate(batch["boxmask"].float(), size=size, mode="bilinear", align_corners=False)[:, 0] > 0.5
    colour = F.interpolate(batch["image"].float(), size=size, mode="area")
    out = logits.clone()
    for i in labels.flatten(1).any(1).nonzero().squeeze(1).tolist():
        z = logits[i, 0].float() - float(threshold_logits[i])
        turned = _turned_cells(z.cpu().numpy(), labels[i].cpu().numpy() > 0, inside[i].cpu().numpy(),
                               _cell_features(values[i], colour[i]))
        if turned.any():
            flip = torch.from_numpy(turned).to(z.device)
            sign = torch.where(z > 0, -1.0, 1.0)
            new = torch.where(flip, sign * (z.abs() + _FLIP_MARGIN), z) + float(threshold_logits[i])
            out[i, 0] = new.to(out.dtype)
    return out


def _cell_features(values: torch.Tensor, colour: torch.Tensor) -> np.ndarray:
    """(h*w, C+3): each cell's unit-length mask features and its weighted colour."""
    v = values.float().flatten(1).T
    v = v / v.norm(dim=1, keepdim=True).clamp(min=1e-6)
    return torch.cat([v, COLOUR_WEIGHT * colour.float().flatten(1).T], 1).cpu().numpy()


def _turned_cells(z: np.ndarray, labels: np.ndarray, inside: np.ndarray, features: np.ndarray) -> np.ndarray:
    """(h, w) bool: the box cells that the disagreeing clicks win. `z` logits minus the threshold, `labels`
    (2, h, w) object / background cells, `inside` the box's cells."""
    h, w = z.shape
    kept, obj, bg = (z > 0).ravel(), labels[0].ravel(), labels[1].ravel()
    a, b = _grid_edges(h, w)
    length = np.linalg.norm(features[a] - features[b], axis=1) + STEP_COST
    border = np.zeros((h, w), bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    core = kept & (z.ravel() >= np.quantile(z.ravel()[kept], CORE_QUANTILE)) if kept.any() else kept
    against = {
        1: ~kept & (~inside.ravel() | border.ravel() | bg),  # what says "background" to an object click
        0: kept & (core | obj),  # what says "object" to a background click
    }
    turned = np.zeros(h * w, bool)
    for label, marks in ((1, obj & ~kept), (0, bg & kept)):
        if not marks.any():
            continue
        side = kept if label == 0 else ~kept
        on_side = side[a] & side[b]
        graph = coo_matrix((length[on_side], (a[on_side], b[on_side])), shape=(h * w, h * w)).tocsr()
        for click in np.flatnonzero(marks):
            near_click = dijkstra(graph, directed=False, indices=click)
            others = np.flatnonzero(against[label])
            others = others[others != click]
            near_other = (dijkstra(graph, directed=False, indices=others, min_only=True)
                          if others.size else np.full(h * w, np.inf))
            turned |= np.isfinite(near_click) & (near_click < near_other)
    return (turned & inside.ravel()).reshape(h, w)


def _grid_edges(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The 4-neighbour edges of an h x w grid as two arrays of flat cell indices."""
    index = np.arange(h * w).reshape(h, w)
    return (np.concatenate([index[:, :-1].ravel(), index[:-1, :].ravel()]),
            np.concatenate([index[:, 1:].ravel(), index[1:, :].ravel()]))
