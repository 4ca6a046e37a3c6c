"""Which class index each COCO category trains as (TAO's `dataset.contiguous_id`, or one class for all), and
whether the spec's `num_classes` holds them; no torch, so the pre-flight checks can use it."""

from __future__ import annotations

from typing import Any

from plumbing.coco_eval import AGNOSTIC_CATEGORY
from plumbing.errors import UserError


def class_indices(categories: dict[int, dict], contiguous: bool, agnostic: bool) -> dict[int, int]:
    """category id -> class index: all 0 (agnostic), 0..N-1 in id order (contiguous), else the id itself."""
    if agnostic:
        return dict.fromkeys(categories, 0)
    if contiguous:
        return {cid: k for k, cid in enumerate(sorted(categories))}
    return {cid: cid for cid in categories}


def classes_of(spec: Any, categories: dict[int, dict]) -> dict[int, int]:
    """The spec's mapping for a file's categories; a class index at or above num_classes is one line."""
    d = spec.dataset
    indices = class_indices(categories, d.contiguous_id, d.class_agnostic)
    num_classes = spec.model.sem_seg_head.num_classes
    needed = max(indices.values(), default=-1) + 1
    if needed > num_classes:
        fix = ("set dataset.contiguous_id=true (classes 0..N-1 in id order) or " if not d.contiguous_id else "")
        raise UserError(
            f"model.sem_seg_head.num_classes: {num_classes} cannot hold the {len(categories)} categories "
            f"(class indices up to {needed - 1}); {fix}set it to at least {needed}"
        )
    return indices


def category_names(categories: dict[int, dict], indices: dict[int, int], agnostic: bool) -> list[dict[str, Any]]:
    """The categories a prediction file names: the json's own, or the one class 'object'."""
    if agnostic:
        return [dict(AGNOSTIC_CATEGORY)]
    return [{"id": cid, "name": categories[cid].get("name", str(cid))} for cid in sorted(indices)]
