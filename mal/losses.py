"""MAL's two losses from boxes alone: MIL box projections, and Dice to mean-field CRF pseudo-labels; plus,
where an annotation has points or scribbles, binary cross-entropy on their labelled pixels.

Everything runs in float32 with autocast off: sums of squares over 128² pixels and 100 products of
probabilities are not safe in fp16/bf16.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mal.spec import TrainConfig


def _fp32(x: torch.Tensor) -> torch.autocast:
    return torch.autocast(device_type=x.device.type, enabled=False)


def dice_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample 1 − 2Σpg / (Σp² + Σg²), the original's squared-denominator form (eps 0.001 on each sum)."""
    with _fp32(pred):
        p = pred.float().flatten(1)
        g = target.float().flatten(1)
        return 1 - 2 * (p * g).sum(1) / ((p * p).sum(1) + 0.001 + (g * g).sum(1) + 0.001)


def mil_loss(probs: torch.Tensor, boxmask: torch.Tensor) -> torch.Tensor:
    """Every row and column crossing the box must hold some object, the rest none (BoxInst projections)."""
    with _fp32(probs):
        p, b = probs.float(), boxmask.float()
        return dice_loss(p.amax(dim=-1), b.amax(dim=-1)) + dice_loss(p.amax(dim=-2), b.amax(dim=-2))


@torch.no_grad()
def mean_field_pseudo_labels(
    image: torch.Tensor,
    probs: torch.Tensor,
    boxmask: torch.Tensor,
    kernel_size: int,
    zeta: float,
    num_iter: int,
    low: float,
    high: float,
    seeds: torch.Tensor | None = None,
) -> torch.Tensor:
    """MAL's CRF: snap the predicted mask to colour edges inside the box; returns a constant {0,1} target.

    `seeds` (N, 2, H, W), from `label_maps`, hold the labelled pixels at their label (object at the high
    clamp, background at the low one) through every iteration, so the target never contradicts a prompt.
    """
    with _fp32(image):
        image, probs, box = image.float(), probs.float(), boxmask.float().flatten(2)
        n, _, height, width = image.shape
        taps, pad = kernel_size * kernel_size, kernel_size // 2

        def neighbours(x: torch.Tensor) -> torch.Tensor:
            return F.unfold(x, kernel_size, padding=pad).view(x.shape[0], x.shape[1], taps, height * width)

        def seeded(q: torch.Tensor) -> torch.Tensor:
            if seeds is None:
                return q
            flat = seeds.flatten(2) > 0
            return torch.where(flat[:, 0:1] & (box > 0), high, torch.where(flat[:, 1:2], low, q))

        # Colour affinity to every tap of the window, centre included. Taps outside the image need no mask:
        # unfold pads log q with 0 there, so they add nothing to either label's sum.
        centre = image.flatten(2).unsqueeze(2)
        affinity = torch.exp(-((neighbours(image) - centre) ** 2).sum(1) / (2 * zeta**2))

        q = seeded((probs.flatten(2) * box).clamp(low, high))
        for _ in range(num_iter):
            log_q = torch.cat([1 - q, q], 1).log().view(n, 2, height, width)
            agg = torch.exp((neighbours(log_q) * affinity.unsqueeze(1)).sum(2))
            bg, fg = agg[:, 0:1], agg[:, 1:2] * box
            q = seeded((fg / (fg + bg + 1e-6)).clamp(low, high))
        return (q > 0.5).float().view(n, 1, height, width)


def label_maps(prompts: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """(N, 2, h, w) {0,1} object / background labels of crop-sized prompt maps at `size`: a cell is labelled
    when any of its crop pixels is; one labelled both ways is left unlabelled (the prompts disagree there)."""
    maps = prompts.float()
    if maps.shape[-2:] != size:
        maps = F.adaptive_max_pool2d(maps, size)
    both = maps[:, 0:1] * maps[:, 1:2]
    return maps - both


def prompt_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-crop binary cross-entropy over the labelled pixels (object 1, background 0); 0 for a crop without any."""
    with _fp32(logits):
        obj, bg = labels[:, 0:1], labels[:, 1:2]
        labelled = (obj + bg).flatten(1)
        bce = F.binary_cross_entropy_with_logits(logits.float(), obj, reduction="none").flatten(1)
        return (bce * labelled).sum(1) / labelled.sum(1).clamp(min=1)


@torch.no_grad()
def feature_affinity_labels(
    levels: list[torch.Tensor], probs: torch.Tensor, boxmask: torch.Tensor, num_iter: int = 3, min_kept: float = 0.2
) -> torch.Tensor:
    """Inside the box, the pixels whose encoder features are closer to the object's than to the ring's.

    Two prototypes per crop and pyramid level (cosine on L2-normalised features): the ring outside the box
    is background, the object starts from the current prediction inside the box; a few hard 2-means rounds
    follow, scored by the sum of the levels' similarities. Each level is compared at its own resolution
    and only the similarity maps are upsampled (upsampling 500 channels to the mask size cost 1 s a batch).
    A crop that keeps less than `min_kept` of its box falls back to the box. This is a pretrained encoder's
    prior, which the MIL and CRF terms then correct. Returns a constant {0,1} target at the probs' size.
    """
    with _fp32(probs):
        size = tuple(probs.shape[-2:])
        feats = [F.normalize(f.float(), dim=1) for f in levels]
        box = boxmask.float()
        ring = 1 - box

        def similarity(weights: torch.Tensor) -> torch.Tensor:
            total = 0
            for f in feats:
                w = F.adaptive_avg_pool2d(weights, f.shape[-2:])
                prototype = F.normalize((f * w).sum((2, 3)) / w.sum((2, 3)).clamp(min=1e-6), dim=1)
                score = (f * prototype[..., None, None]).sum(1, keepdim=True)
                total = total + F.interpolate(score, size=size, mode="bilinear", align_corners=False)
            return total

        fg = probs.float() * box
        for _ in range(num_iter):
            fg = (similarity(fg) > similarity(ring + box - fg)).float() * box
        kept = fg.flatten(1).sum(1) / box.flatten(1).sum(1).clamp(min=1)
        return torch.where((kept < min_kept)[:, None, None, None], box, fg)


def crf_loss(student_probs: torch.Tensor, pseudo: torch.Tensor) -> torch.Tensor:
    return dice_loss(student_probs, pseudo)


def loss_ramp(step: int, epoch: int, ramp_steps: int) -> float:
    """Linear warm-up of a loss weight over the first epoch's steps, as the original."""
    if epoch > 0 or ramp_steps <= 0:
        return 1.0
    return min(1.0, step / ramp_steps)


def mal_losses(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    image: torch.Tensor,
    boxmask: torch.Tensor,
    cfg: TrainConfig,
    step: int,
    epoch: int,
    teacher_levels: list[torch.Tensor] | None = None,
    prompts: torch.Tensor | None = None,
    box_given: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The training objective; "loss_mil"/"loss_crf"/"loss_aff"/"loss_prompt" are the unweighted means, for logging.

    `image` is the clean (un-augmented) crop: the CRF's colour affinities must see the photo's own colours,
    not the student's jitter, blur or greyscale. `teacher_levels` feed the feature-affinity target.
    `prompts` (N, 2, S, S) are the crops' point and scribble maps: a batch without a labelled pixel computes
    exactly what it would without them. `box_given` is 0 for a box derived from prompts, which MIL skips.
    """
    with _fp32(student_logits):
        out_size = tuple(student_logits.shape[-2:])
        crf_size = tuple(max(1, round(s * cfg.crf_size_ratio)) for s in out_size)
        if boxmask.dim() == 3:
            boxmask = boxmask.unsqueeze(1)

        def resize(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
            x = x.float()
            return (
                x
                if x.shape[-2:] == size
                else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            )

        labelled = prompts is not None and bool(prompts.any())
        seeds = label_maps(prompts, crf_size) if labelled else None

        student = torch.sigmoid(student_logits.float())
        per_crop_mil = mil_loss(student, resize(boxmask, out_size))
        if box_given is None or bool(box_given.all()):
            loss_mil = per_crop_mil.mean()
        else:
            loss_mil = (per_crop_mil * box_given).sum() / box_given.sum().clamp(min=1)

        # The CRF target starts from the student-teacher mean: the teacher's only role in training.
        mixed = (student.detach() + torch.sigmoid(teacher_logits.detach().float())) / 2
        pseudo = mean_field_pseudo_labels(
            resize(image, crf_size),
            resize(mixed, crf_size),
            resize(boxmask, crf_size),
            kernel_size=cfg.crf_kernel_size,
            zeta=cfg.crf_zeta,
            num_iter=cfg.crf_num_iter,
            low=cfg.crf_value_low_thres,
            high=cfg.crf_value_high_thres,
            seeds=seeds,
        )
        loss_crf = crf_loss(resize(student, crf_size), pseudo).mean()
        crf_ramp = loss_ramp(step, epoch, cfg.loss_crf_step)

        loss = cfg.loss_mil_weight * loss_ramp(step, epoch, cfg.loss_mil_step) * loss_mil + cfg.loss_crf_weight * crf_ramp * loss_crf
        out = {"loss_mil": loss_mil.detach(), "loss_crf": loss_crf.detach()}
        if cfg.loss_aff_weight > 0 and teacher_levels is not None:
            crf_box = resize(boxmask, crf_size)
            affinity = feature_affinity_labels(teacher_levels, resize(mixed, crf_size), (crf_box > 0.5).float())
            target = mean_field_pseudo_labels(
                resize(image, crf_size), affinity, crf_box, kernel_size=cfg.crf_kernel_size, zeta=cfg.crf_zeta,
                num_iter=cfg.crf_num_iter, low=cfg.crf_value_low_thres, high=cfg.crf_value_high_thres, seeds=seeds,
            )
            loss_aff = crf_loss(resize(student, crf_size), target).mean()
            loss = loss + cfg.loss_aff_weight * crf_ramp * loss_aff
            out["loss_aff"] = loss_aff.detach()
        if labelled:
            # averaged over the batch like the other terms: a crop's weight does not depend on its neighbours' prompts
            loss_prompt = prompt_loss(student_logits, label_maps(prompts, out_size)).mean()
            loss = loss + cfg.loss_prompt_weight * loss_prompt
            out["loss_prompt"] = loss_prompt.detach()
        return {"loss": loss, **out}
