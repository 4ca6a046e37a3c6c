"""Benchmark: can a study be tuned on `box_score` (boxes alone) instead of mIoU (masks)?

The protocol, fixed before any figure was seen. Per data set, two studies with the same spec, budget, sampler
seed and algorithm (asha), differing only in `automl.metric`:
- **mIoU-tuned**: what a team with masks would run;
- **box_score-tuned**: what a team with boxes alone runs. Its trials, ASHA's stopping and the promotion see
  only `box_score`; its validation set keeps its masks so that the promoted model's true mIoU can be read
  (best/metrics.json), but nothing in the study chooses by them.
Figures:
- Spearman's rho of `box_score` with mIoU over every (trial, epoch) point of both studies (bench.box_score_rank);
- the true mIoU of each study's promoted model, and how far the box_score-tuned one falls short of the
  mIoU-tuned one (the gap; goal: at most 0.02).
Data: the synthetic demo set (experiments/mal_demo.yaml, its own automl section) and coco128-seg with the
pretrained encoder (experiments/mal_coco128.yaml at a smaller budget than its automl section, below, so that
the four studies fit in about an hour on 2 cores).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.box_score_rank import SCORES, points
from bench.common import ROOT, bin_path, console, data_dir, print_table, run_logged, write_result

NAME = "box_score"
DATA = ("coco128-seg",)
METRICS = ("mIoU", "box_score")
SEED = 0
RHO_GOAL, PROMOTION_GOAL = 0.6, 0.02  # issue 15
COCO128_BUDGET = ["automl.max_trials=6", "automl.max_epochs=4", "automl.grace_period=1", "automl.reduction_factor=2"]
FULL: dict[str, list[str]] = {"demo": [], "coco128-seg": COCO128_BUDGET}
QUICK: dict[str, list[str]] = {
    "demo": ["automl.max_trials=2", "automl.max_epochs=2", "automl.grace_period=1", "train.num_epochs=2"],
    "coco128-seg": ["automl.max_trials=2", "automl.max_epochs=1", "automl.grace_period=1", "train.num_epochs=1",
                    "dataset.num_workers_per_gpu=0"],
}


def _data_args(work: Path) -> dict[str, tuple[Path, list[str]]]:
    """Data set -> (spec, the overrides that point it at its data)."""
    demo = work / "demo-data"
    run_logged([bin_path("mal"), "demo-data", str(demo)], work / "demo-data.log")
    coco = data_dir() / "coco128-seg"
    splits = {
        "demo": {"train": (demo / "train" / "annotations.json", demo / "train" / "images"),
                 "val": (demo / "val" / "annotations.json", demo / "val" / "images")},
        "coco128-seg": {"train": (coco / "annotations" / "train.json", coco / "images"),
                        "val": (coco / "annotations" / "val.json", coco / "images")},
    }
    specs = {"demo": ROOT / "experiments" / "mal_demo.yaml", "coco128-seg": ROOT / "experiments" / "mal_coco128.yaml"}
    return {
        name: (specs[name], [f"dataset.{split}_{key}={path}" for split, (ann, img) in parts.items()
                             for key, path in (("ann_path", ann), ("img_dir", img))])
        for name, parts in splits.items()
    }


def _study(spec: Path, args: list[str], metric: str, out: Path) -> dict[str, Any]:
    """One `automl run`; its points and its promoted model's scores."""
    run_logged([
        bin_path("automl"), "run", "--model", "mal", "-e", str(spec), "--tracking-uri", f"sqlite:///{out}.mlflow.db",
        *args, f"results_dir={out}", "automl.algorithm=asha", f"automl.metric={metric}", f"automl.seed={SEED}",
    ], out.with_suffix(".log"))
    doc = json.loads((out / "study.json").read_text())
    promoted = json.loads((out / "best" / "metrics.json").read_text())
    return {
        "points": points(out),
        "trials": len(doc["records"]),
        "epochs": sum(len(r["history"]) for r in doc["records"]),
        "promoted": {"trial_id": doc["best"]["trial_id"], **{k: promoted.get(k) for k in ("mIoU", *SCORES)}},
    }


def _rho(found: list[dict[str, float]], score: str) -> float | None:
    from scipy.stats import spearmanr

    return float(spearmanr([p[score] for p in found], [p["mIoU"] for p in found]).statistic) if len(found) > 2 else None


def run(quick: bool) -> None:
    budgets = QUICK if quick else FULL
    figures: dict[str, Any] = {}
    work = Path(tempfile.mkdtemp(prefix="bench-box-score-"))
    try:
        for name, (spec, args) in _data_args(work).items():
            studies = {}
            for metric in METRICS:
                console.print(f"[dim]{name}: study tuned on {metric}[/]")
                studies[metric] = _study(spec, [*args, *budgets[name]], metric, work / f"{name}-{metric}")
            found = [p for s in studies.values() for p in s["points"]]
            gap = studies["mIoU"]["promoted"]["mIoU"] - studies["box_score"]["promoted"]["mIoU"]
            figures[name] = {
                "points": len(found),
                "spearman_with_mIoU": {score: _rho(found, score) for score in SCORES},
                "promoted_mIoU": {metric: s["promoted"]["mIoU"] for metric, s in studies.items()},
                "promoted_mIoU_gap": gap,
                "studies": studies,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [
        [name, f["points"], f["spearman_with_mIoU"]["box_score"], f["spearman_with_mIoU"]["box_projection"],
         f["spearman_with_mIoU"]["box_edge"], f["promoted_mIoU"]["mIoU"], f["promoted_mIoU"]["box_score"],
         f["promoted_mIoU_gap"]]
        for name, f in figures.items()
    ]
    print_table("box_score against mIoU (rho over every (trial, epoch) point of both studies)",
                ["data", "points", "rho box_score", "rho projection", "rho edge", "promoted mIoU (mIoU-tuned)",
                 "promoted mIoU (box_score-tuned)", "gap"], rows)
    goals = {name: {"rho": (f["spearman_with_mIoU"]["box_score"] or -1) >= RHO_GOAL,
                    "promotion": f["promoted_mIoU_gap"] <= PROMOTION_GOAL} for name, f in figures.items()}
    console.print(f"goals (rho >= {RHO_GOAL}, gap <= {PROMOTION_GOAL}): {goals}")
    settings = {"seed": SEED, "algorithm": "asha", "overrides": budgets, "goals": {"rho": RHO_GOAL, "gap": PROMOTION_GOAL}}
    write_result(NAME, settings, {**figures, "goals_met": goals}, quick)
