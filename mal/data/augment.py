"""The student view's colour augmentation (MAL's recipe), drawn from a generator so a sample is reproducible."""

from __future__ import annotations

import math

import numpy as np
import torch
import torchvision.transforms.v2.functional as F

JITTER_P, BRIGHTNESS, CONTRAST, SATURATION, HUE = 0.5, 0.4, 0.4, 0.2, 0.1
GRAYSCALE_P = 0.2
BLUR_P, BLUR_SIGMA = 0.5, (0.1, 2.0)


def colour_augment(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The student branch: ColorJitter(0.4, 0.4, 0.2, 0.1) p=0.5 in random order, grayscale p=0.2,
    Gaussian blur p=0.5; parameters come from `rng` so a sample is reproducible."""
    if rng.random() < JITTER_P:
        ops = [
            (F.adjust_brightness, rng.uniform(1 - BRIGHTNESS, 1 + BRIGHTNESS)),
            (F.adjust_contrast, rng.uniform(1 - CONTRAST, 1 + CONTRAST)),
            (F.adjust_saturation, rng.uniform(1 - SATURATION, 1 + SATURATION)),
            (F.adjust_hue, rng.uniform(-HUE, HUE)),
        ]
        for k in rng.permutation(len(ops)):
            op, factor = ops[k]
            image = op(image, float(factor))
    if rng.random() < GRAYSCALE_P:
        image = F.rgb_to_grayscale(image, num_output_channels=3)
    if rng.random() < BLUR_P:
        sigma = float(rng.uniform(*BLUR_SIGMA))
        kernel = 2 * math.ceil(3 * sigma) + 1
        image = F.gaussian_blur(image, [kernel, kernel], [sigma, sigma])
    return image
