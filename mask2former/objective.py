"""Which validation metric judges a Mask2Former run (its best checkpoint, a study's objective): mask AP and
its parts, all from pycocotools' COCOeval."""

from __future__ import annotations

from typing import Any

from plumbing.coco_eval import AP_NAMES
from plumbing.errors import UserError
from plumbing.wording import did_you_mean

# Every validation metric, all higher-is-better; the first is a study's default objective.
METRICS = dict.fromkeys(AP_NAMES, "max")


def objective(spec: Any) -> str:
    """`automl.metric` when set (checked against METRICS), else mask_AP."""
    section = spec.automl
    metric = section.get("metric") if isinstance(section, dict) else getattr(section, "metric", None)
    if metric is None:
        return next(iter(METRICS))
    if metric not in METRICS:
        raise UserError(
            f"automl.metric: {metric!r} is not a metric mask2former reports{did_you_mean(metric, METRICS)}; "
            f"choose from {', '.join(METRICS)}"
        )
    return metric
