"""Shared fixtures: the CLI runners, the shared real datasets, and a small demo dataset made once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BIN = Path(sys.executable).parent


def run_cli(tool: str, *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `mal` / `automl` as a user would: a real process, its exit code and output."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [str(BIN / tool), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env
    )


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "coco128-seg").is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}: the suite needs ../shared/data")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    from mal.synthetic import write_demo_dataset

    out = tmp_path_factory.mktemp("demo")
    write_demo_dataset(out, seed=0)
    return out


# A MAL small enough to train in seconds on one CPU core: 4x4 tokens, a 16-channel head.
TINY = [
    "model.arch=vit-micro/8",
    "dataset.crop_size=32",
    "model.mask_head_hidden_channel=16",
    "model.mask_head_out_channel=16",
    "dataset.min_obj_size=64",
    "dataset.num_workers_per_gpu=0",
    "train.num_gpus=0",
    "train.batch_size=8",
    "train.lr=1.0e-4",
    "train.crf_num_iter=5",
    "train.loss_mil_step=4",
    "train.loss_crf_step=8",
    "evaluate.batch_size=16",
    "inference.batch_size=16",
]


def data_args(data: Path) -> list[str]:
    return [
        f"dataset.train_ann_path={data / 'train' / 'annotations.json'}",
        f"dataset.train_img_dir={data / 'train' / 'images'}",
        f"dataset.val_ann_path={data / 'val' / 'annotations.json'}",
        f"dataset.val_img_dir={data / 'val' / 'images'}",
    ]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from mal.synthetic import write_demo_dataset

    out = tmp_path_factory.mktemp("tiny")
    write_demo_dataset(out, seed=1, num_train=6, num_val=3, image_size=96)
    return out


@pytest.fixture(autouse=True, scope="session")
def _private_tracking(tmp_path_factory):
    """Studies run by tests track into a throwaway sqlite, never the working directory's mlflow.db."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlruns') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)
