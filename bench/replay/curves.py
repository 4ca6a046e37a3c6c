"""The recorded learning curves of one data set: what `python -m bench record_curves` writes and the
replay reads. One file per set, bench/data/curves_<set>.json:

    {"set", "metric", "mode", "max_epochs", "recipe": {"spec", "overrides"}, "schedule": {"grace_period",
     "reduction_factor"}, "search_space": study.json's,
     "recorded": date, "machine": ..., "configs": [{"trial_id", "params", "curve": [metric at epoch 1, 2, ...]}]}

A curve shorter than max_epochs is a trial that failed or diverged there; its epochs still count.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.space.sampling import SearchSpace

CURVES_DIR = Path(__file__).resolve().parents[1] / "data"


def curves_path(data_set: str) -> Path:
    return CURVES_DIR / f"curves_{data_set}.json"


@dataclass(frozen=True)
class Curves:
    data_set: str
    metric: str
    mode: str
    max_epochs: int
    space: SearchSpace
    configs: tuple[dict[str, Any], ...]  # {"trial_id", "params", "curve"}
    doc: dict[str, Any]

    def points(self) -> list[tuple[int, dict[str, Any], int, float]]:
        """(config index, params, epoch, value) of every finite recorded validation."""
        return [
            (i, c["params"], epoch, value)
            for i, c in enumerate(self.configs)
            for epoch, value in enumerate(c["curve"], start=1)
            if value is not None and math.isfinite(value)
        ]

    def best(self) -> float:
        """The best recorded value of any configuration at any epoch."""
        values = [v for *_, v in self.points()]
        return max(values) if self.mode == "max" else min(values)


def curves_from_study(study: dict[str, Any], data_set: str, recipe: dict[str, Any]) -> dict[str, Any]:
    """A finished study.json turned into a curves document: every trial's params and per-epoch metric."""
    metric = study["settings"]["metric"]
    configs = []
    for record in study["records"]:
        by_epoch = {h["epoch"]: h.get(metric) for h in record.get("history", [])}
        curve = [by_epoch.get(e) for e in range(1, max(by_epoch, default=0) + 1)]
        if curve:
            configs.append({"trial_id": record["trial_id"], "params": record["params"], "curve": curve, "status": record["status"]})
    return {
        "set": data_set, "metric": metric, "mode": study["settings"]["mode"],
        "max_epochs": study["settings"]["max_epochs"], "recipe": recipe,
        # the successive-halving schedule of the recipe's own automl section, which the replay studies use
        "schedule": {k: study["settings"][k] for k in ("grace_period", "reduction_factor")},
        "search_space": study["search_space"], "configs": configs,
    }


def load_curves(path: str | Path) -> Curves:
    doc = json.loads(Path(path).read_text())
    return Curves(
        data_set=doc["set"], metric=doc["metric"], mode=doc["mode"], max_epochs=int(doc["max_epochs"]),
        space=SearchSpace.from_dict(doc["search_space"]), configs=tuple(doc["configs"]), doc=doc,
    )
