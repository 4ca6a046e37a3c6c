"""`python -m bench record_curves`: record real MAL learning curves once, for the replay benchmark.

Per data set, one `automl run` study with random search and no early stopping trains 48 configurations
over the full epoch budget of a CPU recipe; every trial's validation metric at every epoch goes into
bench/data/curves_<set>.json (committed), with the recipe, the searched space, the machine, and the
held-out quality of the surrogate the replay will fit (bench/replay/surrogate.py). `--quick` records a few
short trials into bench/results/ instead and leaves the committed files alone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    bin_path,
    console,
    data_dir,
    machine_info,
    print_table,
    run_logged,
    write_result,
)
from bench.replay.curves import curves_from_study, curves_path, load_curves
from bench.replay.surrogate import fit_surrogate

NAME = "record_curves"
DATA = ("coco128-seg",)
SETS = tuple(os.environ.get("BENCH_RECORD_SETS", "coco128-seg,demo").split(","))
# The CPU recipes: coco128-seg at the hpo_efficiency bench's size (pretrained EfficientNet-Lite0, 64 px
# crops), 8 epochs; the demo spec as it is, over its own automl section's budget (20 epochs).
RECIPES: dict[str, dict[str, Any]] = {
    "coco128-seg": {
        "spec": "experiments/mal_coco128.yaml",
        "overrides": ["dataset.crop_size=64", "train.crf_num_iter=20", "dataset.min_obj_size=4096", "automl.max_epochs=8"],
    },
    "demo": {"spec": "experiments/mal_demo.yaml", "overrides": []},
}
FULL = {"trials": 48, "seed": 0}
QUICK = {"trials": 2, "seed": 0, "overrides": ["automl.max_epochs=2", "automl.grace_period=1"]}


def _data_overrides(data_set: str, work: Path) -> list[str]:
    if data_set == "demo":
        demo = work / "demo-data"
        run_logged([bin_path("mal"), "demo-data", str(demo)], work / "demo-data.log")
        train, val = (demo / "train" / "annotations.json", demo / "train" / "images"), (demo / "val" / "annotations.json", demo / "val" / "images")
    else:
        root = data_dir() / data_set
        train = (root / "annotations" / "train.json", root / "images")
        val = (root / "annotations" / "val.json", root / "images")
    return [f"dataset.train_ann_path={train[0]}", f"dataset.train_img_dir={train[1]}",
            f"dataset.val_ann_path={val[0]}", f"dataset.val_img_dir={val[1]}"]


def record(data_set: str, s: dict[str, Any], work: Path) -> dict[str, Any]:
    """One random-search study of the recipe; its curves as a document (not yet written)."""
    recipe = RECIPES[data_set]
    overrides = [*recipe["overrides"], *s.get("overrides", [])]
    study = work / f"record-{data_set}"
    run_logged([
        bin_path("automl"), "run", "--model", "mal", "-e", str(ROOT / recipe["spec"]), *_data_overrides(data_set, work),
        *overrides, "automl.algorithm=random", f"automl.max_trials={s['trials']}", f"automl.seed={s['seed']}",
        "automl.cpus_per_trial=1", "automl.gpus_per_trial=0", f"automl.experiment_name=record-{data_set}",
        f"results_dir={study}", "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
    ], work / f"record-{data_set}.log")
    doc = curves_from_study(json.loads((study / "study.json").read_text()), data_set,
                            {"spec": recipe["spec"], "overrides": overrides})
    return with_surrogate_quality(doc)


def with_surrogate_quality(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with the schedule its spec sets, the date, the machine, and the surrogate the replay will use."""
    doc = {**doc, "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine_info()}
    tmp = Path(tempfile.mkdtemp()) / "curves.json"
    tmp.write_text(json.dumps(doc))
    chosen, quality = fit_surrogate(load_curves(tmp))
    shutil.rmtree(tmp.parent, ignore_errors=True)
    return {**doc, "surrogate": {"kind": chosen.kind, "held_out": quality}}


def run(quick: bool) -> None:
    s = QUICK if quick else FULL
    work = Path(tempfile.mkdtemp(prefix="bench-record-"))
    rows, written = [], {}
    try:
        for data_set in SETS:
            console.print(f"{data_set}: {s['trials']} configurations, random search, every epoch ...")
            doc = record(data_set, s, work)
            target = (ROOT / "bench" / "results" / f"curves_{data_set}.json") if quick else curves_path(data_set)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(doc, indent=1) + "\n")
            written[data_set] = str(target.relative_to(ROOT))
            for kind, q in doc["surrogate"]["held_out"].items():
                rows.append([data_set, len(doc["configs"]), kind + (" (kept)" if kind == doc["surrogate"]["kind"] else ""),
                             q["rmse"], q["r2"], q["spearman_all_epochs"], q["spearman_last_epoch"]])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table("record_curves: the surrogate on held-out configurations (6-fold, configurations left out whole)",
                ["data", "configs", "regressor", "RMSE", "R²", "rho, every epoch", "rho, last epoch"], rows)
    write_result(NAME, {**s, "recipes": {k: RECIPES[k] for k in SETS}}, {"written": written}, quick)
