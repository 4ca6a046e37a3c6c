"""Training contract on a tiny CPU MAL: checkpoint names, exact resume (mid-epoch and at epoch ends),
evaluation metrics and the inference output."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mal import runner
from mal.spec import load_spec
from tests.conftest import TINY, data_args, run_cli

pytestmark = pytest.mark.slow  # every test here trains MAL (or reads what its module's run trained)


class StepLog(Callback):
    """lr used at every optimizer step, and the weights at the end."""

    def __init__(self) -> None:
        self.lrs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


def _spec(data: Path, out: Path, *extra: str):
    return load_spec(None, [*TINY, *data_args(data), f"results_dir={out}", "train.num_epochs=2", *extra])


def _weights(train_dir: Path, name: str = "mal_model_latest.pth") -> dict[str, torch.Tensor]:
    return torch.load(train_dir / name, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def full_run(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    log = StepLog()
    result = runner.fit(_spec(tiny_data, out, "train.checkpoint_interval_unit=step"), callbacks=[log], enable_progress_bar=False)
    return out, log, result


def test_checkpoint_names_follow_tao(full_run):
    out, log, result = full_run
    train_dir = out / "train"
    names = sorted(p.name for p in train_dir.glob("*.pth"))
    assert "mal_model_latest.pth" in names and "mal_model_best.pth" in names
    steps = len(log.lrs)
    assert f"model_epoch_001_step_{steps:05d}.pth" in names
    assert result.epochs_run == 2 and np.isfinite(result.best_metric)
    assert not list(train_dir.glob("*.tmp"))  # atomic writes leave no partial files


def test_every_epoch_is_checkpointed_when_validation_skips_some(tiny_data, tmp_path):
    """validation_interval 2 over 3 epochs: the unvalidated epochs (the last among them) still get their
    checkpoint, and the latest file holds the last epoch, not the last validated one."""
    runner.fit(_spec(tiny_data, tmp_path, "train.num_epochs=3", "train.validation_interval=2"), enable_progress_bar=False)
    train_dir = tmp_path / "train"
    assert {f"model_epoch_{e:03d}.pth" for e in range(3)} <= {p.name for p in train_dir.glob("*.pth")}
    latest = torch.load(train_dir / "mal_model_latest.pth", weights_only=False)
    assert latest["epoch"] == 2


def test_first_step_is_already_in_warmup(full_run):
    _, log, _ = full_run
    lrs = [log.lrs[s] for s in sorted(log.lrs)]
    assert 0 < lrs[0] < max(lrs)  # the original ran step 0 at the full lr
    assert lrs[-1] < max(lrs)  # cosine decay after warmup


def test_mid_epoch_resume_continues_from_the_saved_step(full_run, tiny_data, tmp_path):
    out, log, _ = full_run
    steps_per_epoch = len(log.lrs) // 2
    stop = steps_per_epoch + 1  # one step into the second epoch
    saved = out / "train" / f"model_epoch_001_step_{stop:05d}.pth"
    assert saved.is_file()
    resumed = StepLog()
    runner.fit(
        _spec(tiny_data, tmp_path, "train.checkpoint_interval_unit=step", f"train.resume_training_checkpoint_path={saved}"),
        callbacks=[resumed],
        enable_progress_bar=False,
    )
    assert sorted(resumed.lrs) == list(range(stop, len(log.lrs)))  # no step of the epoch is trained twice
    for step, lr in resumed.lrs.items():
        assert lr == pytest.approx(log.lrs[step], rel=1e-9)
    a, b = _weights(out / "train"), _weights(tmp_path / "train")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_with_a_perturbed_lr_trains_on_at_the_new_lr(full_run, tiny_data, tmp_path):
    """A PBT exploit restores another trial's checkpoint under a new spec: the new lr must win."""
    out, log, _ = full_run
    stop = len(log.lrs) // 2 + 1
    saved = out / "train" / f"model_epoch_001_step_{stop:05d}.pth"
    resumed = StepLog()
    runner.fit(
        _spec(tiny_data, tmp_path, "train.lr=3.0e-4", f"train.resume_training_checkpoint_path={saved}"),
        callbacks=[resumed],
        enable_progress_bar=False,
    )
    for step, lr in resumed.lrs.items():
        assert lr == pytest.approx(3 * log.lrs[step], rel=1e-9)  # TINY's lr is 1e-4


def test_epoch_boundary_auto_resume_reproduces_the_uninterrupted_weights(full_run, tiny_data, tmp_path):
    out, log, _ = full_run
    steps_per_epoch = len(log.lrs) // 2
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    shutil.copyfile(out / "train" / f"model_epoch_000_step_{steps_per_epoch:05d}.pth", train_dir / "mal_model_latest.pth")
    resumed = StepLog()
    runner.fit(_spec(tiny_data, tmp_path, "train.checkpoint_interval_unit=step"), callbacks=[resumed], enable_progress_bar=False)
    assert min(resumed.lrs) == steps_per_epoch
    a, b = _weights(out / "train"), _weights(train_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "resumed run diverged from the uninterrupted one"


def test_evaluate_and_inference_contracts(full_run, tiny_data, tmp_path):
    out, _, _ = full_run
    ckpt = out / "train" / "mal_model_best.pth"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("results_dir: " + str(tmp_path) + "\n")
    args = [*TINY, *data_args(tiny_data)]
    done = run_cli("mal", "evaluate", "-e", str(spec_file), *args, f"evaluate.checkpoint={ckpt}")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    for key in ("mIoU", "mIoU_small", "mIoU_medium", "mIoU_large", "mask_AP", "mask_AP50", "num_instances"):
        assert key in metrics
    assert 0 < metrics["mIoU"] <= 1 and metrics["num_instances"] > 0

    ann = tiny_data / "val" / "annotations.json"
    done = run_cli(
        "mal", "inference", "-e", str(spec_file), *args, f"inference.checkpoint={ckpt}",
        f"inference.ann_path={ann}", f"inference.img_dir={tiny_data / 'val' / 'images'}", "inference.label_dump_path=masks.json",
    )
    assert done.returncode == 0, done.stderr
    _check_labels(ann, tmp_path / "inference" / "masks.json")


def _check_labels(source: Path, written: Path) -> None:
    src = json.loads(source.read_text())
    out = json.loads(written.read_text())
    assert out["images"] == src["images"] and out["categories"] == src["categories"]
    assert [a["id"] for a in out["annotations"]] == [a["id"] for a in src["annotations"]]
    for a, b in zip(src["annotations"], out["annotations"], strict=True):
        assert (a["image_id"], a["category_id"], a["bbox"]) == (b["image_id"], b["category_id"], b["bbox"])
        assert isinstance(b["segmentation"]["counts"], str)
    gt = COCO(str(source))
    dt = gt.loadRes([{**a, "score": a["score"]} for a in out["annotations"]])
    ev = COCOeval(gt, dt, "segm")
    ev.evaluate()
    ev.accumulate()
    assert COCO(str(written)).getAnnIds()  # the file is itself a COCO ground truth


def test_inference_on_real_photos_keeps_every_box_including_crowd(full_run, shared_data, tmp_path):
    out, _, _ = full_run
    ann = shared_data / "tiny-coco" / "annotations.json"
    spec = load_spec(None, [
        *TINY, f"results_dir={tmp_path}", f"inference.checkpoint={out / 'train' / 'mal_model_best.pth'}",
        f"inference.ann_path={ann}", f"inference.img_dir={shared_data / 'tiny-coco' / 'images'}",
        "inference.label_dump_path=tiny_mal.json", "inference.load_mask=true",
    ])
    summary = runner.infer(spec)
    assert summary["annotations"] == len(json.loads(ann.read_text())["annotations"])
    _check_labels(ann, tmp_path / "inference" / "tiny_mal.json")


def test_ddp_over_two_cpu_processes_shards_training_and_gathers_validation(tiny_data, tmp_path):
    """Lightning DDP with gloo: each rank trains half of every epoch; validation is sharded, then gathered,
    so the best mIoU equals a single-process `mal evaluate` of the same checkpoint."""
    from mal.data import train_instances
    from plumbing.coco import load_coco

    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"results_dir: {tmp_path}\n")
    args = [*TINY, *data_args(tiny_data)]
    done = run_cli("mal", "train", "-e", str(spec_file), *args, "train.cpu_processes=2", "train.num_epochs=2", timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    boxes, _ = train_instances(load_coco(str(tiny_data / "train" / "annotations.json")), 64, 1e10)
    steps_per_epoch = math.ceil(math.ceil(len(boxes) / 2) / 8)  # each of 2 ranks: half the boxes, batch 8
    latest = torch.load(tmp_path / "train" / "mal_model_latest.pth", weights_only=True)
    assert latest["global_step"] == 2 * steps_per_epoch

    best = tmp_path / "train" / "mal_model_best.pth"
    best_score = next(
        float(state["best_model_score"]) for key, state in torch.load(best, weights_only=True)["callbacks"].items()
        if "'monitor': 'mIoU'" in key
    )
    done = run_cli("mal", "evaluate", "-e", str(spec_file), *args, f"evaluate.checkpoint={best}")
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert metrics["mIoU"] == pytest.approx(best_score, abs=1e-5)
