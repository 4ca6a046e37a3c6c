"""A tracking server that fails never stops a study: calls are retried in order in the background, the
study completes with its folder intact, and credentials never show in what it prints."""

from __future__ import annotations

import csv
import io
import socket

import pytest
from rich.console import Console

import automl.study
from automl.registry import get_model
from automl.space import load_space_file, resolve_space
from automl.tracking import BackgroundTracker, redact
from mal.spec import load_spec
from tests.conftest import ROOT, TINY, data_args


class FlakyTracker:
    """Fails its first `failures` calls, then records the calls it receives."""

    uri = "http://user:hunter2@tracking.example:5000"

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, []

    def log(self, value: int) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError(f"cannot reach {self.uri}")
        self.calls.append(value)


def test_calls_are_retried_in_order_and_credentials_masked():
    warnings: list[str] = []
    tracker = FlakyTracker(failures=2)
    tracking = BackgroundTracker(tracker, warnings.append)
    for value in range(5):
        tracking.send("log", value)
    assert tracking.close(timeout=30) is True
    assert tracker.calls == [0, 1, 2, 3, 4]
    assert "failed" in warnings[0] and "reachable again" in warnings[1]
    assert not any("hunter2" in w for w in warnings) and "***@tracking.example" in warnings[0]


def test_a_lasting_outage_gives_up_after_the_flush_deadline():
    warnings: list[str] = []
    tracking = BackgroundTracker(FlakyTracker(failures=10**6), warnings.append)
    for value in range(3):
        tracking.send("log", value)
    assert tracking.close(timeout=2) is False
    assert "could not be delivered" in warnings[-1]


def test_redact_hides_userinfo_only():
    assert redact("see https://bob:pw@host:5000/api and sqlite:///x.db") == "see https://***@host:5000/api and sqlite:///x.db"


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.slow
def test_a_study_completes_while_the_tracking_server_is_down(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(automl.study, "TRACKING_FLUSH_SECONDS", 3.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://admin:s3cret@127.0.0.1:{_dead_port()}"
    spec = load_spec(ROOT / "experiments" / "mal_demo.yaml", [
        *TINY, *data_args(tiny_data), f"results_dir={tmp_path}", "automl.algorithm=random", "automl.max_trials=2",
        "automl.max_epochs=1", "automl.grace_period=1", "automl.max_concurrent=2", f"automl.tracking_uri={uri}",
    ])
    model = get_model("mal")
    space = resolve_space(model, load_space_file(model.search_space), spec, ["train.lr"], {})
    out = io.StringIO()
    result = automl.study.run_study(model, spec, space, tmp_path, Console(file=out, width=300))
    printed = out.getvalue()
    assert result.state.status == "completed" and (tmp_path / "best" / "model.pth").is_file()
    rows = list(csv.DictReader((tmp_path / "leaderboard.csv").open()))
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    assert "MLflow tracking at http://***@127.0.0.1" in printed and "s3cret" not in printed
    assert result.champion.startswith("not registered")
    assert "s3cret" not in (tmp_path / "study.json").read_text()
