"""MLflow tracking against a real `mlflow server` on 127.0.0.1: one parent run per study, a child per trial
with dotted params and the mIoU history, and a champion alias that only moves for a better model."""

from __future__ import annotations

import csv
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
from mlflow import MlflowClient

from automl.tracking import promote_champion
from plumbing.files import file_hash
from tests.conftest import BIN, ROOT, TINY, data_args, run_cli

pytestmark = pytest.mark.slow  # a real study tracked on a real MLflow server

ARTIFACTS = ROOT / "test-artifacts"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("mlflow server did not come up on 127.0.0.1")
        time.sleep(0.5)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def tracked_study(mlflow_server, tiny_data, tmp_path_factory):
    """A 3-trial study tracked on the server; returns its folder and the CLI's stdout."""
    tmp_path = tmp_path_factory.mktemp("tracked")
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"results_dir: {tmp_path / 'study'}\n")
    done = run_cli(
        "automl", "run", "-e", str(spec_file), "--tracking-uri", mlflow_server, *TINY, *data_args(tiny_data),
        "automl.max_trials=3", "automl.max_epochs=2", "automl.grace_period=1", "automl.reduction_factor=2",
        "automl.hyperparameters=[train.lr,train.loss_mil_weight]", "automl.range_overrides={train.lr: {low: 1.0e-5, high: 1.0e-3}}",
        "automl.experiment_name=tracking-test", "automl.log_all_checkpoints=true",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp_path / "study", done.stdout


def test_study_is_tracked_with_nested_runs_and_a_champion(mlflow_server, tracked_study, tiny_data, tmp_path):
    study, stdout = tracked_study
    assert "mal@champion is version 1" in stdout and f"automl ui --tracking-uri {mlflow_server}" in stdout

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("tracking-test")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("automl.kind") == "study"]
    assert len(parents) == 1
    parent = parents[0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    rows = list(csv.DictReader((study / "leaderboard.csv").open()))
    assert sorted(c.data.tags["automl.trial_id"] for c in children) == sorted(r["trial_id"] for r in rows)
    for child in children:
        row = next(r for r in rows if r["trial_id"] == child.data.tags["automl.trial_id"])
        assert float(child.data.params["train.lr"]) == pytest.approx(float(row["train.lr"]))
        history = client.get_metric_history(child.info.run_id, "mIoU")
        assert [m.step for m in history] == list(range(1, int(row["epochs"]) + 1))
        assert [m.step for m in client.get_metric_history(child.info.run_id, "box_score")] == [m.step for m in history]
        assert max(m.value for m in history) == pytest.approx(float(row["best_mIoU"]), abs=1e-5)
        assert child.data.tags["automl.status"] == row["status"] and child.info.status == "FINISHED"
        assert [a.path for a in client.list_artifacts(child.info.run_id, "checkpoint")] == ["checkpoint/mal_model_best.pth"]
    assert parent.data.params["automl.algorithm"] == "asha" and "search_space_sha256" in parent.data.params
    doc = json.loads((study / "study.json").read_text())
    assert parent.data.tags["automl.best_trial"] == doc["best"]["trial_id"]
    gain = {key: value for key, value in doc["gain"].items() if isinstance(value, float)}
    assert gain and {f"gain.{key}": value for key, value in gain.items()} == {
        key: pytest.approx(value) for key, value in parent.data.metrics.items() if key.startswith("gain.")
    }

    champion = client.get_model_version_by_alias("mal", "champion")
    assert champion.run_id == parent.info.run_id
    recorded = json.loads((study / "best" / "metrics.json").read_text())
    assert float(champion.tags["mIoU"]) == pytest.approx(recorded["mIoU"])

    # `mal evaluate evaluate.checkpoint=models:/mal@champion` loads the champion's weights from the registry
    done = run_cli(
        "mal", "evaluate", "-e", str(study / "best" / "spec.yaml"), "evaluate.checkpoint=models:/mal@champion",
        f"results_dir={tmp_path / 'again'}", env={"MLFLOW_TRACKING_URI": mlflow_server},
    )
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "again" / "evaluate" / "metrics.json").read_text())
    assert again["mIoU"] == pytest.approx(recorded["mIoU"], abs=1e-6)

    # A later, worse result on the same evaluation set leaves the champion where it was; a better one moves it.
    eval_set = file_hash(tiny_data / "val" / "annotations.json")
    best_dir = study / "best"
    version, moved, message = promote_champion(
        mlflow_server, "mal", parent.info.run_id, best_dir, {"mIoU": recorded["mIoU"] - 0.1}, "mIoU", "max", eval_set
    )
    assert not moved and "stays at version 1" in message
    assert client.get_model_version_by_alias("mal", "champion").version == champion.version
    version, moved, _ = promote_champion(
        mlflow_server, "mal", parent.info.run_id, best_dir, {"mIoU": recorded["mIoU"] + 0.1}, "mIoU", "max", eval_set
    )
    assert moved and client.get_model_version_by_alias("mal", "champion").version == version
    _, moved, message = promote_champion(mlflow_server, "mal", parent.info.run_id, best_dir, {"mIoU": 0.99}, "mIoU", "max", "other-set")
    assert not moved and "another validation set" in message
    _, moved, message = promote_champion(
        mlflow_server, "mal", parent.info.run_id, best_dir, {"box_score": 0.99}, "box_score", "max", eval_set
    )
    assert not moved and "judged by box_score, the champion by mIoU" in message


def test_mlflow_ui_lists_the_trials_under_the_study_in_a_browser(mlflow_server, tracked_study):
    """Headless Chromium (Debian's package; `make test` installs it) on the 127.0.0.1 server: the study's
    run is listed, and expanding it shows every trial run. The screenshot is kept in test-artifacts/."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium not found: `make test` installs Debian's chromium package")
    study, _ = tracked_study
    trial_ids = [r["trial_id"] for r in csv.DictReader((study / "leaderboard.csv").open())]
    experiment = MlflowClient(mlflow_server).get_experiment_by_name("tracking-test")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--headless=new", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{mlflow_server}/#/experiments/{experiment.experiment_id}/runs")
            parent = page.get_by_role("link", name="study", exact=True)
            parent.wait_for(timeout=60000)
            for trial_id in trial_ids:  # nested: hidden until the study's row is expanded
                assert page.get_by_role("link", name=f"trial-{trial_id}").count() == 0
            page.locator("[role=gridcell]", has=parent).locator("button").first.click()
            for trial_id in trial_ids:
                page.get_by_role("link", name=f"trial-{trial_id}").wait_for(timeout=30000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "mlflow_ui_study.png"))
        finally:
            browser.close()
