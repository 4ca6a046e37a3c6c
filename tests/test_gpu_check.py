"""The prepared GPU check on a machine without a GPU: its CPU path end to end, and the pieces that decide what
a GPU run reports (mask agreement, part selection and needs, time caps, the budget, missing wheels)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from bench import gpu_check, gpu_wheels
from bench.gpu_check import BY_NAME, feeding, goals, run_child, selected, unmet_need
from bench.gpu_mask2former import AP_TOLERANCE, problems_of
from bench.gpu_parts import AGREEMENT, CheckFailed, Context, mask_agreement
from tests.conftest import ROOT


def _label(ann_id: int, mask: np.ndarray, bbox: list[float], score: float = 0.5) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"id": ann_id, "bbox": bbox, "segmentation": rle, "score": score}


def _disc(shift: int = 0, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - 32) ** 2 + (xx - 32 - shift) ** 2 < 20**2


def test_masks_agree_by_iou_or_by_a_few_pixels_of_a_small_box():
    fp32, bf16 = AGREEMENT["gpu_fp32"], AGREEMENT["gpu_bf16"]
    box = [12.0, 12.0, 40.0, 40.0]
    same = mask_agreement([_label(1, _disc(), box)], [_label(1, _disc(), box, 0.51)], fp32)
    assert same["agree"] and same["min_iou"] == 1.0 and same["max_score_diff"] == pytest.approx(0.01)

    moved = mask_agreement([_label(1, _disc(), box)], [_label(1, _disc(shift=8), box)], bf16)
    assert not moved["agree"] and moved["agreeing"] == 0 and moved["min_iou"] < 0.8

    small = np.zeros((64, 64), bool)
    small[2:7, 2:8] = True  # 30 px in a 10 x 10 box: one pixel is 1% of the box but 3% of the IoU
    one_off, two_off = small.copy(), small.copy()
    one_off[2, 2] = False
    two_off[2, 2:4] = False
    tiny_box = [0.0, 0.0, 10.0, 10.0]
    assert mask_agreement([_label(1, small, tiny_box)], [_label(1, one_off, tiny_box)], fp32)["agree"]
    assert not mask_agreement([_label(1, small, tiny_box)], [_label(1, two_off, tiny_box)], fp32)["agree"]

    empty = np.zeros((64, 64), bool)
    assert mask_agreement([_label(1, empty, tiny_box)], [_label(1, empty, tiny_box)], fp32)["min_iou"] == 1.0


def test_agreement_counts_the_share_of_boxes_and_refuses_other_boxes():
    box = [12.0, 12.0, 40.0, 40.0]
    reference = [_label(i, _disc(), box) for i in range(20)]
    one_moved = [_label(i, _disc(shift=8 if i == 0 else 0), box) for i in range(20)]
    result = mask_agreement(reference, one_moved, AGREEMENT["gpu_bf16"])
    assert result["agreeing"] == 19 and result["fraction"] == 0.95 and result["agree"]  # 95% is bf16's floor
    assert not mask_agreement(reference, one_moved, AGREEMENT["gpu_fp32"])["agree"]  # fp32 wants 98%
    with pytest.raises(CheckFailed, match="different boxes"):
        mask_agreement(reference, reference[:-1], AGREEMENT["gpu_fp32"])


def test_mask2former_on_a_gpu_fails_on_bad_losses_or_an_ap_the_cpu_does_not_share():
    assert problems_of([3.2, 2.9], [0.01, 0.02], 0.02, 0.021) == []
    assert problems_of([3.2, math.nan], [0.01], 0.02, None) == ["1 of 2 logged losses are NaN or inf"]
    assert problems_of([], [0.01], 0.02, None) == ["no training loss was logged"]
    assert "not one finite value" in problems_of([1.0], [math.nan], 0.02, None)[0]
    (moved,) = problems_of([1.0], [0.3], 0.30, 0.30 - 2 * AP_TOLERANCE)
    assert "on the GPU against" in moved and "on the CPU" in moved


def test_selected_parts_bring_what_they_read_in_the_checks_order():
    assert [p.name for p in selected(["eval_infer"])] == ["demo_data", "train_resume", "eval_infer"]
    assert [p.name for p in selected([])] == list(BY_NAME)
    with pytest.raises(SystemExit, match="unknown part 'train'"):
        selected(["train"])


def test_a_part_says_what_it_needs(monkeypatch):
    ok = {"demo_data": {"status": "ok"}}
    assert unmet_need(BY_NAME["ddp"], 1, ok) == "needs 2 GPUs, found 1"
    assert unmet_need(BY_NAME["ray_trials"], 0, ok) == "needs a GPU"
    assert unmet_need(BY_NAME["eval_infer"], 0, {**ok, "train_resume": {"status": "failed"}}) == (
        "needs train_resume, which did not succeed")
    assert unmet_need(BY_NAME["train_vit"], 0, ok) is None
    monkeypatch.setattr(gpu_check, "find_spec", lambda name: None)
    assert unmet_need(BY_NAME["ray_trials"], 1, ok).startswith("Ray is not installed")


def test_feeding_and_goals_only_from_a_gpu_run():
    outcomes = {
        "train_vit": {"status": "ok", "figures": {"train_crops_per_s": 310.0}},
        "data_loader": {"status": "ok", "figures": {"per_worker_at_crop": 25.0, "cpu_cores": 16}},
        "infer_sweep": {"status": "failed", "figures": {"best_masks_per_s": 2000.0}},
    }
    assert feeding(outcomes, 1) == {"train_crops_per_s": 310.0, "crops_per_s_per_worker": 25.0,
                                    "workers_needed": 13, "cpu_cores": 16, "starved": False}
    assert feeding(outcomes, 0) is None
    aims = goals(outcomes, 1)
    assert aims["train_crops_per_s"] == {"goal": 300.0, "measured": 310.0, "met": True}
    assert aims["infer_masks_per_s"]["measured"] is None  # a failed part's figures count for no goal
    assert goals(outcomes, 0)["train_crops_per_s"]["measured"] is None


def _processes_naming(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


def test_a_part_past_its_cap_is_killed_with_the_commands_it_started(tmp_path):
    (tmp_path / "logs").mkdir()
    Context(tmp_path, tmp_path / "demo", None, 0).write()
    outcome = run_child(BY_NAME["demo_data"], tmp_path, cap=3.0)  # `mal demo-data` takes longer than that
    assert outcome["status"] == "timed out" and "3 s cap" in outcome["reason"], outcome
    time.sleep(0.5)
    assert _processes_naming(str(tmp_path)) == []


def test_without_its_wheels_the_check_skips_every_part_and_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_wheels, "missing", lambda: ["pydantic"])
    code = gpu_check.check(60, ["data_loader"], tmp_path, tmp_path / "no-wheels", keep=False)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1
    assert "make gpu-wheels" in doc["settings"]["wheels"]["error"] and "pydantic" in doc["settings"]["wheels"]["error"]
    assert {p["status"] for p in doc["figures"]["parts"].values()} == {"skipped"}


def test_a_spent_budget_runs_nothing_and_fails(tmp_path):
    code = gpu_check.check(0, ["demo_data"], tmp_path, tmp_path, keep=False)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 1
    assert doc["figures"]["parts"]["demo_data"] == {"status": "not run", "reason": "the check's 0 s budget is spent"}


@pytest.mark.slow
def test_without_a_gpu_the_check_runs_the_cpu_parts_says_what_needs_a_gpu_and_exits_0(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--results", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = doc["figures"]["parts"]
    assert doc["settings"]["sizes"] == "cpu" and doc["settings"]["gpus"] == 0
    assert {name for name, p in parts.items() if p["status"] == "ok"} == set(BY_NAME) - {"ddp", "ray_trials"}
    assert parts["ddp"] == {"status": "skipped", "reason": "needs 2 GPUs, found 0"}
    assert parts["ray_trials"] == {"status": "skipped", "reason": "needs a GPU"}

    trained = parts["train_resume"]["figures"]
    assert trained["device"] == "cpu" and trained["resumed_to"] > trained["epochs"]
    labelled = parts["eval_infer"]["figures"]
    assert labelled["boxes_labelled"] == {"cpu": parts["demo_data"]["figures"]["boxes"]["val"]}
    assert "agreement" not in labelled  # the GPU's masks are what it compares
    assert parts["train_vit"]["figures"]["train_crops_per_s"] > 0 and parts["train_vit"]["figures"]["mfu"] is None
    assert list(parts["infer_sweep"]["figures"]["masks_per_s"]) == ["4", "8"]  # JSON keys
    second = parts["train_m2f"]["figures"]
    assert second["device"] == "cpu, fp32" and second["losses_logged"] > 0 and second["mask_AP_cpu"] is None
    assert 0 <= second["mask_AP"] <= 1 and len(second["mask_AP_per_epoch"]) == second["epochs"]

    assert doc["figures"]["needs_a_gpu"] == gpu_check.NEEDS_A_GPU
    assert all(goal["measured"] is None for goal in doc["figures"]["goals"].values())
    assert "needs a GPU, not shown by this run" in done.stdout and "GPU check without a GPU" in done.stdout
    log = (tmp_path / "gpu_check.log").read_text()
    assert "===== train_resume: ok" in log and "----- train_resume-resume.log" in log
