"""From network logits to per-box masks in image coordinates (the paste-back shared by validation,
`mal evaluate` and `mal inference`), honouring the points and scribbles of the boxes that have them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils

from mal.data.crops import box_pixels
from mal.data.prompts import region_prompt_maps
from mal.losses import label_maps
from mal.metrics import BUCKETS, area_bucket
from mal.model import MALNet
from mal.prompt_regions import spread_prompts

_NEWTON_STEPS, _HALVINGS = 8, 10  # the key fit is convex: a few damped Newton steps converge
_RIDGE = 1e-4


@dataclass
class InstanceMask:
    """One box's mask. Only the box region is stored: outside the box the mask is zero by construction."""

    ann_id: int
    image_id: int
    category_id: int
    bbox: list[float]  # xywh, as given
    image_hw: tuple[int, int]
    region: tuple[int, int, int, int]  # y0, y1, x0, x1 of the box in image pixels, clipped to the image
    mask: np.ndarray  # bool, shape (y1-y0, x1-x0)
    score: float  # mean foreground probability: the confidence COCOeval ranks by
    prob: np.ndarray | None = None  # float32 foreground probability over the region, when asked for

    @property
    def box_area(self) -> float:
        return float(self.bbox[2] * self.bbox[3])

    @property
    def empty(self) -> bool:
        return not self.mask.any()

    def full_mask(self) -> np.ndarray:
        h, w = self.image_hw
        canvas = np.zeros((h, w), dtype=np.uint8)
        y0, y1, x0, x1 = self.region
        canvas[y0:y1, x0:x1] = self.mask
        return canvas

    def rle(self) -> dict:
        rle = mask_utils.encode(np.asfortranarray(self.full_mask()))
        rle["counts"] = rle["counts"].decode("ascii")
        return rle


def thresholds_by_bucket(mask_thres: list[float]) -> dict[str, float]:
    values = mask_thres * 3 if len(mask_thres) == 1 else mask_thres
    return dict(zip(BUCKETS, values, strict=True))


def paste_masks(
    logits: torch.Tensor, batch: dict[str, torch.Tensor], thresholds: dict[str, float], keep_prob: bool = False
) -> list[InstanceMask]:
    """Upsample each crop's logits to its expanded box in image pixels, keep the box region, binarise.
    `keep_prob`: each mask keeps its probabilities too (to binarise it again at other thresholds).

    Resizing straight to the expanded-box size (instead of crop size, then again to the box) is the same
    mapping with one interpolation less.
    """
    out = []
    logits = logits.float()
    for i in range(logits.shape[0]):
        ex0, ey0, ex1, ey1 = (int(v) for v in batch["ext_box"][i].tolist())
        bbox = [float(v) for v in batch["bbox"][i].tolist()]
        image_hw = tuple(int(v) for v in batch["image_hw"][i].tolist())
        x0, y0, x1, y1 = box_pixels(bbox, image_hw)
        if y1 > y0 and x1 > x0:
            up = F.interpolate(logits[i : i + 1], size=(ey1 - ey0, ex1 - ex0), mode="bilinear", align_corners=False)
            prob = torch.sigmoid(up[0, 0, y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0])
            mask = (prob > thresholds[area_bucket(bbox[2] * bbox[3])]).cpu().numpy()
            score = float(prob[torch.from_numpy(mask).to(prob.device)].mean()) if mask.any() else float(prob.mean())
        else:
            prob = torch.zeros((y1 - y0, x1 - x0))
            mask, score = np.zeros((y1 - y0, x1 - x0), dtype=bool), 0.0
        out.append(
            InstanceMask(
                ann_id=int(batch["ann_id"][i]),
                image_id=int(batch["image_id"][i]),
                category_id=int(batch["category_id"][i]),
                bbox=bbox,
                image_hw=image_hw,  # type: ignore[arg-type]
                region=(y0, y1, x0, x1),
                mask=mask,
                score=score,
                prob=prob.float().cpu().numpy() if keep_prob else None,
            )
        )
    return out


def prompted_logits(
    net: MALNet, logits: torch.Tensor, batch: dict[str, torch.Tensor], thresholds: dict[str, float],
    refine: bool = True, keep_weight: float = 0.1, spread: bool = True,
) -> torch.Tensor:
    """The logits of the crops whose boxes have points or scribbles, read with their prompts; every other
    crop's logits unchanged.

    `refine`: MAL's logits are K·V per pixel, so a click says which V features are object and which are not.
    Per prompted crop a correction d of the key minimises the cross-entropy at its labelled pixels plus
    `keep_weight` × the mean squared change d·V over its box (an f-BRS-style refinement, on the key alone):
    a click flips the region the network sees as like it, not only its own pixel. The problem is convex; a
    few Newton steps solve it.
    `spread`: then a click the mask still disagrees with turns over the region it falls in
    (mal.prompt_regions), the threshold being the box's size bucket's.
    """
    prompts = batch.get("prompts")
    if prompts is None or not (refine or spread):
        return logits
    rows = prompts.flatten(1).any(1).nonzero().squeeze(1)
    if not rows.numel():
        return logits
    values = net.value_maps(batch["image"][rows], batch["box_area"][rows])
    part = {key: batch[key][rows] for key in ("image", "boxmask", "prompts")}
    with torch.autocast(device_type=logits.device.type, enabled=False):  # a Newton solve needs float32
        chosen = logits[rows].float()
        if refine:
            chosen = _key_fitted(chosen, values.float(), part, keep_weight)
        if spread:
            cut = [thresholds[area_bucket(float(a))] for a in batch["box_area"][rows].tolist()]
            chosen = spread_prompts(chosen, values.float(), part, torch.logit(torch.tensor(cut)))
    out = logits.clone()
    out[rows] = chosen.to(out.dtype)
    return out


def _key_fitted(logits: torch.Tensor, values: torch.Tensor, part: dict[str, torch.Tensor], keep_weight: float) -> torch.Tensor:
    """Each crop's logits read with its key corrected by `key_correction`."""
    size = tuple(logits.shape[-2:])
    labels = label_maps(part["prompts"], size).flatten(2)
    inside = F.interpolate(part["boxmask"].float(), size=size, mode="bilinear", align_corners=False).flatten(1) > 0.5
    out = logits.clone()
    for k in range(logits.shape[0]):
        base, v = logits[k].flatten(), values[k].flatten(1)
        change = key_correction(base, v, labels[k], inside[k], keep_weight) @ v
        out[k] = (base + change).view_as(out[k])
    return out


def key_correction(
    base: torch.Tensor, values: torch.Tensor, labels: torch.Tensor, inside: torch.Tensor, keep_weight: float
) -> torch.Tensor:
    """The (C,) key change d: argmin Σ_labelled BCE(base + d·v, label) + keep_weight · mean_inside (d·v)².

    `base` (P,) logits, `values` (C, P), `labels` (2, P) object / background, `inside` (P,) bool: the box.
    Newton steps, each halved until the objective falls (plain Newton can overshoot on cross-entropy).
    """
    labelled = (labels[0] + labels[1]) > 0
    v, target, z0 = values[:, labelled], labels[0, labelled], base[labelled]
    box = values[:, inside] if inside.any() else values
    channels = values.shape[0]
    # the mean squared change over the box is d' keep d; a tiny ridge keeps the solve regular where the
    # box's features span fewer than C directions
    keep = box @ box.T / box.shape[1]
    ridge = 2 * keep_weight * keep + _RIDGE * (keep.diagonal().mean() + 1e-6) * torch.eye(channels, device=values.device)

    def objective(d: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(z0 + d @ v, target, reduction="sum") + 0.5 * d @ ridge @ d

    d = torch.zeros(channels, device=values.device)
    for _ in range(_NEWTON_STEPS):
        p = torch.sigmoid(z0 + d @ v)
        gradient = v @ (p - target) + ridge @ d
        hessian = (v * (p * (1 - p))) @ v.T + ridge
        step, current = torch.linalg.solve(hessian, gradient), objective(d)
        for _ in range(_HALVINGS):
            if objective(d - step) <= current:
                d = d - step
                break
            step = step / 2
    return d


def force_prompts(inst: InstanceMask, ann: dict) -> InstanceMask:
    """The mask with `ann`'s labelled pixels set: object points and scribbles on, background points off (a
    pixel labelled both ways keeps the network's answer)."""
    maps = region_prompt_maps(ann, inst.region)
    if not maps.any():
        return inst
    obj, bg = maps[0] > 0, maps[1] > 0
    mask = inst.mask.copy()
    mask[obj & ~bg] = True
    mask[bg & ~obj] = False
    return dataclasses.replace(inst, mask=mask)
