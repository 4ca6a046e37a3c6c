"""Safe files and services: a kill mid-save keeps the previous checkpoint, user files never run code (pickle
payloads, YAML tags), the MLflow UI listens on loopback only, Ray starts without its dashboard, and
credentials stay out of MLflow params and the console."""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mal import checkpoint as ckpt
from mal.errors import UserError
from plumbing.torch_files import save_atomic
from tests.conftest import BIN, ROOT, run_cli
from tests.test_bad_inputs import _base, _run_in_process, weights  # noqa: F401 - weights is a fixture

# ---------------------------------------------------------------------------------------------- atomic saves

CHILD_SAVE = """
import sys, torch
from plumbing.torch_files import save_atomic
# 16 tensors of 16 MB: a save that takes long enough to be caught in the middle
save_atomic({f"w{i}": torch.full((4 * 1024 * 1024,), float(i)) for i in range(16)}, sys.argv[1])
"""
FULL_SIZE = 16 * 16 * 2**20


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _temp_files(folder: Path, target: Path) -> list[Path]:
    return list(folder.glob(f".{target.name}.*.tmp"))


def test_kill_during_checkpoint_save_keeps_the_previous_checkpoint(tmp_path):
    target = tmp_path / "train" / "mal_model_latest.pth"
    previous = {"epoch": 3, "state_dict": {"net.student.w": torch.arange(12.0)}}
    save_atomic(previous, target)
    before = _digest(target)

    child = subprocess.Popen([sys.executable, "-c", CHILD_SAVE, str(target)], cwd=ROOT)
    deadline = time.monotonic() + 120
    caught_at = 0
    while time.monotonic() < deadline and child.poll() is None:
        sizes = [p.stat().st_size for p in _temp_files(target.parent, target) if p.exists()]
        if sizes and sizes[0] > 8 * 2**20:  # the new checkpoint is being written: kill it now
            child.send_signal(signal.SIGKILL)
            caught_at = sizes[0]
            break
        time.sleep(0.002)
    child.wait(timeout=60)

    assert child.returncode == -signal.SIGKILL, "the save ended before it could be killed mid-write"
    leftovers = _temp_files(target.parent, target)
    assert len(leftovers) == 1 and 0 < leftovers[0].stat().st_size < FULL_SIZE, "not killed mid-write"
    assert caught_at < FULL_SIZE
    assert _digest(target) == before, "the checkpoint's file changed"
    loaded = ckpt.load(target)
    assert loaded["epoch"] == 3 and torch.equal(loaded["state_dict"]["net.student.w"], torch.arange(12.0))
    assert ckpt.latest(target.parent) == target  # resume finds the intact file, never the hidden temp one


# ---------------------------------------------------------------------------------------------- no code from files


class Payload:
    """Unpickling this runs a shell command that leaves a marker file: the proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write_payload(path: Path, marker: Path, as_torch: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"state_dict": {"net.student.w": Payload(marker)}, "optimizer_states": []}
    if as_torch:
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state))
    return path


@pytest.mark.parametrize("as_torch", [True, False], ids=["torch-zip", "raw-pickle"])
@pytest.mark.parametrize(
    ("cmd", "key"),
    [
        ("mal evaluate", "evaluate.checkpoint"),
        ("mal inference", "inference.checkpoint"),
        ("mal train", "train.resume_training_checkpoint_path"),
        ("mal train", "train.pretrained_model_path"),
        ("mal train", "<results_dir>/train/mal_model_latest.pth"),  # resumed automatically
    ],
)
def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(
    cmd, key, as_torch, weights, tmp_path, monkeypatch, capsys  # noqa: F811 - the fixture
):
    marker, results = tmp_path / "payload-ran", tmp_path / "results"
    argv = _base(cmd, weights, results)
    if key.startswith("<results_dir>"):
        _write_payload(results / "train" / "mal_model_latest.pth", marker, as_torch)
    else:
        argv.append(f"{key}={_write_payload(tmp_path / 'evil.pth', marker, as_torch)}")
    monkeypatch.chdir(tmp_path)
    code, out, err = _run_in_process(argv, monkeypatch, capsys)
    assert code == 2 and err.count("\n") == 1 and "refused" in err, err
    assert "Traceback" not in out + err
    assert not marker.exists(), "the pickle payload ran"


def test_malicious_checkpoint_refused_by_the_real_command(weights, tmp_path):  # noqa: F811 - the fixture
    marker = tmp_path / "payload-ran"
    evil = _write_payload(tmp_path / "evil.pth", marker, as_torch=True)
    done = run_cli(*_base("mal evaluate", weights, tmp_path / "results"), f"evaluate.checkpoint={evil}", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "it would import posix.system" in done.stderr and done.stderr.count("\n") == 1
    assert not marker.exists()


def test_yaml_python_tags_are_refused_in_specs_overrides_and_search_spaces(tmp_path):
    from automl.space import load_space_file
    from mal.spec import load_spec

    marker = tmp_path / "payload-ran"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"train:\n  lr: {payload}\n")
    space = tmp_path / "space.yaml"
    space.write_text(f"model: {payload}\nparameters: {{}}\n")
    for attempt in (lambda: load_spec(spec), lambda: load_spec(None, [f"train.lr={payload}"]), lambda: load_space_file(space)):
        with pytest.raises(UserError, match=r"the tag !!python/object/apply:os\.system is not allowed"):
            attempt()
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------- services


def _process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def _listening(pids: list[int]) -> list[tuple[str, int]]:
    """(address, port) of every listening TCP socket the processes hold, read from /proc (Linux)."""
    owned = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                owned.add(link[8:-1])
    found = []
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in owned:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # /proc prints host-order words
            found.append((socket.inet_ntop(family, words), int(port, 16)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from Linux /proc")
def test_mlflow_ui_listens_on_loopback_only_by_default(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # a file store starts without the sqlite schema migrations; where it listens does not depend on the backend
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"}
    ui = subprocess.Popen(
        [str(BIN / "automl"), "ui", "--port", str(port), "--tracking-uri", (tmp_path / "mlruns").as_uri()],
        cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline, sockets = time.monotonic() + 240, []
        while time.monotonic() < deadline and ui.poll() is None:
            sockets = _listening(_process_tree(ui.pid))
            if any(p == port for _, p in sockets):
                break
            time.sleep(0.5)
        assert any(p == port for _, p in sockets), f"the UI never listened on {port}"
        assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait()


def test_studies_and_labeling_start_ray_without_its_dashboard(monkeypatch):
    import ray

    from plumbing.ray_session import connect_ray

    calls = []
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: calls.append(kwargs))
    assert connect_ray() is True
    assert len(calls) == 1 and calls[0]["include_dashboard"] is False


# ---------------------------------------------------------------------------------------------- credentials

SECRETS = ("s3cret-pass", "tok-123", "sk-456")
CREDENTIAL_URI = f"http://alice:{SECRETS[0]}@mlflow.example.com:5000"


def _tracker(tmp_path: Path):
    """A study tracker on the session's private sqlite (conftest), in an experiment of this test's own."""
    from automl.tracking import StudyTracker, tracking_uri

    return StudyTracker(tracking_uri(), f"secrets-{tmp_path.name}")


def test_secret_named_params_never_reach_mlflow(tmp_path):
    from mlflow import MlflowClient

    tracker = _tracker(tmp_path)
    uri = tracker.uri
    parent = tracker.start_study(str(tmp_path / "study"), {"algorithm": "asha", "api_token": SECRETS[1]}, {"parameters": {}})
    tracker.start_trial("t1", {"train.lr": 1e-4, "dataset.aws_secret_access_key": SECRETS[2], "db.password": "pw"})
    client = MlflowClient(uri)
    logged = {**client.get_run(parent).data.params, **client.get_run(tracker.children["t1"]).data.params}
    assert logged["train.lr"] == "0.0001" and logged["automl.algorithm"] == "asha"  # params are logged at all
    text = repr(logged)
    assert not any(secret in text for secret in SECRETS) and "db.password" not in logged


def test_url_credentials_in_param_values_never_reach_mlflow(tmp_path):
    from mlflow import MlflowClient

    tracker = _tracker(tmp_path)
    parent = tracker.start_study(str(tmp_path / "study"), {"tracking_uri": CREDENTIAL_URI}, {"parameters": {}})
    assert SECRETS[0] not in repr(MlflowClient(tracker.uri).get_run(parent).data.params)


def test_ui_never_prints_tracking_uri_credentials(monkeypatch, capsys):
    from automl.cli import main

    monkeypatch.setattr(sys, "argv", ["automl", "ui", "--tracking-uri", CREDENTIAL_URI])
    with pytest.raises(SystemExit):
        main()
    out, err = capsys.readouterr()
    assert "mlflow.example.com" in out and SECRETS[0] not in out + err
