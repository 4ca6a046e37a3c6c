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
