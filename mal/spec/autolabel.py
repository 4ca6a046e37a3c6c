"""TAO's auto-label spec (`auto_label generate`) read into a MAL spec for inference.

The layout: top-level `results_dir`, `gpu_ids`, `num_gpus`, `batch_size`, `num_workers` and
`autolabel_type: mal`, and a `mal:` block holding any MAL spec key plus its own `checkpoint` (and
`results_dir`). The top-level values fill the MAL spec's inference settings where the block leaves them unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mal.spec.load import validate_dict
from mal.spec.schema import ExperimentSpec
from plumbing.errors import UserError
from plumbing.overrides import apply_overrides
from plumbing.safe_yaml import read_mapping
from plumbing.spec_reader import pop_required, required_problem
from plumbing.wording import describe, did_you_mean

AUTOLABEL_TYPES = ("mal",)


class AutoLabelSpec(BaseModel):
    """The top level of an auto-label spec; the `mal` block is checked as a MAL spec."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    results_dir: str | None = None
    gpu_ids: list[int] | None = None
    num_gpus: int | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    num_workers: int | None = Field(None, ge=0)
    autolabel_type: str = "mal"
    mal: dict[str, Any] = Field(default_factory=dict)


def _top_problems(data: dict[str, Any]) -> list[str]:
    try:
        AutoLabelSpec.model_validate(data)
    except ValidationError as exc:
        fields = list(AutoLabelSpec.model_fields)
        return [describe(e, lambda where: did_you_mean(where, fields)) for e in exc.errors()]
    return []


def autolabel_spec(path: str | Path, overrides: list[str] | None = None) -> ExperimentSpec:
    """The MAL spec an auto-label file and its overrides (`mal.inference.ann_path=...`) describe."""
    data = apply_overrides(read_mapping(path, "spec file", "a mapping"), list(overrides or []))
    kind = data.get("autolabel_type", "mal")
    if kind not in AUTOLABEL_TYPES:
        raise UserError(f"autolabel_type: {kind!r} is not supported; supported: {', '.join(AUTOLABEL_TYPES)}")
    missing = pop_required(data)
    problems = _top_problems(data)
    if problems:
        problems = ([required_problem(missing)] if missing else []) + problems
        raise UserError.of_problems("invalid auto-label spec", problems)
    top = AutoLabelSpec.model_validate(data)
    block = dict(top.mal)
    checkpoint = block.pop("checkpoint", None)
    block_results = block.pop("results_dir", None)
    inference = dict(block.get("inference") or {}) if isinstance(block.get("inference"), dict) else block.get("inference")
    if isinstance(inference, dict):
        for key, value in (("checkpoint", checkpoint), ("gpu_ids", top.gpu_ids), ("num_gpus", top.num_gpus),
                           ("batch_size", top.batch_size)):  # fmt: skip
            if value is not None:
                inference.setdefault(key, value)
        block["inference"] = inference
    if top.num_workers is not None and isinstance(block.setdefault("dataset", {}), dict):
        block["dataset"].setdefault("num_workers_per_gpu", top.num_workers)
    results_dir = block_results or top.results_dir
    if results_dir:
        block["results_dir"] = results_dir
    return validate_dict(block, [f"mal.{key}" if not key.startswith("mal.") else key for key in missing])
