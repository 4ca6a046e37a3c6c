"""The benchmark pieces that could go wrong without anyone noticing: the fixed-cost workload's cost and
metric, the overhead and HPO arithmetic, and a benchmark refusing to run without its data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench.hpo_efficiency import asha_epochs_per_trial, best_so_far, epochs_to_reach
from bench.overhead import TrialTimes, ideal_seconds, startup_latency, wall_over_ideal
from tests.conftest import ROOT


@pytest.mark.slow
def test_workload_costs_its_epoch_seconds_reports_a_deterministic_metric_and_resumes(tmp_path, monkeypatch):
    from bench import workload
    from mal.spec import load_spec, with_values

    monkeypatch.setenv(workload.EPOCH_SECONDS_ENV, "0.5")
    values = {"train.lr": 1e-4, "train.loss_crf_weight": 1.0, "train.loss_mil_weight": 2.0, "train.warmup_epochs": 0}
    spec = with_values(load_spec(None, [f"results_dir={tmp_path}", "train.num_epochs=2"]), values)
    result = workload.fit(spec, enable_progress_bar=False)

    assert result.best_metric == pytest.approx(workload.score(1e-4, 1.0, 2.0, 0, epoch=2))
    assert result.best_metric > workload.score(1e-4, 1.0, 2.0, 0, epoch=1)  # it rises with the epochs
    assert {"mal_model_best.pth", "mal_model_latest.pth"} <= {p.name for p in result.train_dir.iterdir()}
    (run,) = json.loads((result.train_dir / workload.TIMING_FILE).read_text())
    ends = [run["first_step"], *run["epoch_ends"]]
    epochs = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    # at least the spin: a deadline, however busy the machine (what comes on top, the overhead benchmark measures)
    assert len(epochs) == 2 and all(e >= 0.5 for e in epochs), epochs

    resumed = workload.fit(with_values(spec, {"train.num_epochs": 3}), enable_progress_bar=False)
    runs = json.loads((result.train_dir / workload.TIMING_FILE).read_text())
    assert len(runs) == 2 and len(runs[1]["epoch_ends"]) == 1  # only the missing epoch is trained
    promoted = workload.weights(resumed.best_checkpoint)
    assert int(promoted["epochs_trained"]) == 3


def test_overhead_and_hpo_arithmetic():
    assert ideal_seconds(trials=16, epochs=4, epoch_seconds=2.5, concurrency=2) == 80.0
    assert wall_over_ideal(88.0, 16, 4, 2.5, 2) == pytest.approx(1.1)
    # two slots from t=0: trials a, b start at once; c waits for a's slot (free at 10) and starts at 12
    trials = [TrialTimes(0.5, 1.0, 10.0, 4), TrialTimes(0.5, 1.5, 11.0, 4), TrialTimes(10.5, 12.0, 20.0, 4)]
    latency = startup_latency(trials, launched=0.0, concurrency=2)
    assert latency == {"first_trial_s": 1.0, "trial_startup_median_s": 2.0, "trial_startup_max_s": 2.0}

    assert asha_epochs_per_trial(max_epochs=4, grace_period=1, reduction_factor=2) == 2.0
    curve = best_so_far([0.2, 0.5, 0.4, 0.6])
    assert curve == [0.2, 0.5, 0.5, 0.6]
    assert epochs_to_reach(curve, 0.5) == 2 and epochs_to_reach(curve, 0.7) is None


def test_benchmark_without_its_data_says_so_and_fails(tmp_path):
    env = {**os.environ, "BENCH_DATA_DIR": str(tmp_path / "nowhere")}
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "quality"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = [ln for ln in done.stdout.splitlines() if "data not found" in ln]
    assert len(lines) == 1 and str(tmp_path / "nowhere" / "coco128-seg") in lines[0], done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_downstream_training_files_differ_only_in_their_masks(tmp_path):
    from bench.downstream import summarise, training_files

    train = {"images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10}], "categories": [{"id": 5, "name": "x"}],
             "annotations": [{"id": 7, "image_id": 1, "category_id": 5, "bbox": [1, 2, 3, 4], "segmentation": [[1, 2, 4, 2, 4, 6]]},
                             {"id": 8, "image_id": 1, "category_id": 5, "bbox": [0, 0, 5, 5], "iscrowd": 1,
                              "segmentation": {"size": [10, 10], "counts": "0"}}]}  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(train))
    mal_rle = {"size": [10, 10], "counts": "a1"}
    (tmp_path / "labels.json").write_text(json.dumps({"annotations": [{"id": 7, "segmentation": mal_rle}, {"id": 8, "segmentation": mal_rle}]}))
    files = training_files(tmp_path / "train.json", tmp_path / "labels.json", tmp_path)
    anns = {variant: json.loads(path.read_text())["annotations"] for variant, path in files.items()}
    assert [a["segmentation"] for a in (v[0] for v in anns.values())] == [[[1, 2, 4, 2, 4, 6]], mal_rle, [[1, 2, 4, 2, 4, 6, 1, 6]]]
    assert all(v[1] == train["annotations"][1] for v in anns.values())  # a crowd region is left as it is
    assert all({k: a for k, a in v[0].items() if k != "segmentation"} == {k: a for k, a in train["annotations"][0].items()
                                                                          if k != "segmentation"} for v in anns.values())  # fmt: skip
    runs = {"human masks": [{"mask_AP": 0.2, "mask_AP50": 0.4, "mask_AP75": 0.0, "mask_AP_large": 0.5}, {"mask_AP": 0.4, "mask_AP50": 0.4, "mask_AP75": 0.0, "mask_AP_large": 0.5}],
            "MAL masks": [{"mask_AP": 0.15, "mask_AP50": 0.3, "mask_AP75": 0.1, "mask_AP_large": 0.25}] * 2,
            "box-fill masks": [{"mask_AP": 0.0, "mask_AP50": 0.1, "mask_AP75": 0.0, "mask_AP_large": 0.1}] * 2}  # fmt: skip
    figures = summarise(runs)
    assert figures["MAL masks"]["percent_of_fully_supervised"] == {"mask_AP": 50.0, "mask_AP50": 75.0, "mask_AP75": None, "mask_AP_large": 50.0}
