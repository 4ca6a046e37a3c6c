"""Running on a Ray cluster: cluster.yaml passes Ray's own validator, the shared-storage rule, the token
lookup, and a real two-node Ray cluster on loopback (token auth on) running a study sent by `automl submit`."""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from rich.console import Console

from automl import cluster
from mal.errors import UserError
from tests.conftest import BIN, ROOT, TINY, data_args, run_cli

# ---- cluster.yaml ---------------------------------------------------------------------------------------


def _prepared(config: dict) -> dict:
    """What `ray up` checks before it calls the cloud: defaults merged in, then the autoscaler's JSON schema
    and its cross-field rules."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _cluster_yaml() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_passes_rays_validation():
    config = _prepared(_cluster_yaml())
    head, worker = config["available_node_types"]["head"], config["available_node_types"]["gpu_worker"]
    assert config["head_node_type"] == "head" and worker["resources"]["GPU"] >= 1 and worker["max_workers"] >= 1
    assert worker["min_workers"] == 0 and head["resources"]["CPU"] == 0  # trials go to the GPU workers
    assert any("--dashboard-host=127.0.0.1" in c for c in config["head_start_ray_commands"])
    assert "--env RAY_AUTH_MODE=token" in config["docker"]["run_options"]
    assert "~/.ray/auth_token" in config["file_mounts"]
    assert any("pip install" in c and "~/automl-mal" in c for c in config["setup_commands"])
    assert any("/mnt/shared" in c for c in config["initialization_commands"])


@pytest.mark.parametrize(
    ("breakage", "complaint"),
    [
        (lambda c: c.pop("head_node_type"), "head_node_type"),
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=9), "min_workers"),  # above max_workers
        (lambda c: c.update(idle_timeout=10), "idle_timeout"),  # a misspelt key
    ],
    ids=["no-head-node-type", "min-above-max", "unknown-key"],
)
def test_broken_cluster_yaml_fails_validation(breakage, complaint):
    import jsonschema

    config = _cluster_yaml()
    breakage(config)
    with pytest.raises((ValueError, jsonschema.ValidationError), match=complaint):
        _prepared(config)


# ---- shared storage ---------------------------------------------------------------------------------------

MOUNTS = [("/", "ext4"), ("/tmp", "tmpfs"), ("/mnt/shared", "nfs4"), ("/mnt/bucket", "fuse.s3fs")]


def _node(address: str, hostname: str, alive: bool = True) -> dict:
    return {"Alive": alive, "NodeManagerAddress": address, "NodeManagerHostname": hostname}


TWO_HOSTS = [_node("10.0.0.1", "head"), _node("10.0.0.2", "gpu-1"), _node("10.0.0.2", "gpu-1")]
ONE_HOST = [_node("10.0.0.1", "box"), _node("10.0.0.1", "box"), _node("10.0.0.9", "gone", alive=False)]


def test_node_local_results_dir_is_refused_on_a_multi_host_cluster(tmp_path):
    with pytest.raises(UserError) as refused:
        cluster.check_shared_storage(tmp_path / "study", "http://mlflow:5000", nodes=TWO_HOSTS, mounts=MOUNTS)
    message = str(refused.value)
    assert str((tmp_path / "study").resolve()) in message and "2 hosts" in message
    assert "network filesystem" in message and "\n" not in message


@pytest.mark.parametrize("location", ["/mnt/shared/runs/s1", "/mnt/bucket/runs/s1"])
def test_shared_results_dir_is_accepted_on_a_multi_host_cluster(location):
    cluster.check_shared_storage(location, "http://mlflow:5000", nodes=TWO_HOSTS, mounts=MOUNTS)


@pytest.mark.parametrize("location", ["s3://bucket/runs/s1", Path("gs://b/runs")])
def test_an_object_store_results_dir_is_refused_with_what_works(location):
    with pytest.raises(UserError, match="object-store URI cannot hold a study folder yet.*network filesystem"):
        cluster.check_shared_storage(location, "http://mlflow:5000", nodes=ONE_HOST, mounts=MOUNTS)


def test_one_host_needs_no_shared_storage(tmp_path):
    out = io.StringIO()
    cluster.check_shared_storage(tmp_path, "sqlite:///mlflow.db", nodes=ONE_HOST, mounts=MOUNTS, console=Console(file=out))
    assert out.getvalue() == ""  # several nodes on one machine share its disk, dead nodes do not count


def test_file_tracking_on_a_multi_host_cluster_is_warned():
    out = io.StringIO()
    cluster.check_shared_storage("/mnt/shared/s", "sqlite:///mlflow.db", nodes=TWO_HOSTS, mounts=MOUNTS, console=Console(file=out))
    assert "tracking server" in out.getvalue()
    out = io.StringIO()
    cluster.check_shared_storage("/mnt/shared/s", "http://10.0.0.1:5000", nodes=TWO_HOSTS, mounts=MOUNTS, console=Console(file=out))
    assert out.getvalue() == ""


def test_filesystem_type_takes_the_longest_mount_prefix():
    assert cluster.filesystem_type(Path("/mnt/shared/a/b"), MOUNTS) == "nfs4"
    assert cluster.filesystem_type(Path("/mnt/sharedx/a"), MOUNTS) == "ext4"  # a prefix of the name is not a parent


# ---- token and submission ----------------------------------------------------------------------------------


def test_auth_token_follows_rays_lookup_order(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "DEFAULT_TOKEN_FILE", tmp_path / "default")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert cluster.auth_token() is None
    (tmp_path / "default").write_text("from-file\n")
    assert cluster.auth_token() == "from-file"
    (tmp_path / "path").write_text("from-path")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "path"))
    assert cluster.auth_token() == "from-path"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert cluster.auth_token() == "from-env"
    assert cluster.auth_token("explicit") == "explicit"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(UserError, match="RAY_AUTH_TOKEN_PATH"):
        cluster.auth_token()


def test_runtime_env_ships_the_code_not_the_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    env = cluster.runtime_env(tmp_path)
    assert env["working_dir"] == str(tmp_path.resolve()) and env["env_vars"] == {"MLFLOW_TRACKING_URI": "http://mlflow:5000"}
    from ray._private.runtime_env.packaging import _get_excludes

    excluded = _get_excludes(tmp_path, env["excludes"])  # Ray's own matcher, as the upload applies it
    for path in [".venv", ".git", "runs", "data", "mlruns", "mlflow.db", "sub/model.pth", "test-artifacts"]:
        assert excluded(tmp_path / path), path
    for path in ["automl/cli.py", "experiments/mal_demo.yaml", "tests/data", "mal/data.py"]:
        assert not excluded(tmp_path / path), path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submit_to_an_unreachable_address_is_one_line(tmp_path):
    done = run_cli("automl", "submit", "--address", f"http://127.0.0.1:{_free_port()}", "--", "automl", "run", "-e", "x.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: no Ray dashboard answers at http://127.0.0.1:") and done.stderr.count("\n") == 1


class _Clock:
    """time for automl.cluster: sleeping moves the clock on at once, so the test waits for nothing."""

    def __init__(self) -> None:
        self.now = 0.0
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def _starting_cluster(monkeypatch, refusals: int) -> tuple[list[str], _Clock]:
    """A Jobs API whose head's job agent starts after `refusals` submissions, answered as Ray's dashboard
    answers them meanwhile (the client turns its HTTP 500 into a RuntimeError)."""
    submitted: list[str] = []

    class StartingClient:
        def __init__(self, address, headers=None):
            self.address = address

        def submit_job(self, entrypoint, runtime_env):
            if len(submitted) < refusals:
                submitted.append("refused")
                raise RuntimeError("Request failed with status code 500: No available agent to submit job, please try again later..")
            submitted.append(entrypoint)
            return "raysubmit_started"

    clock = _Clock()
    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", StartingClient)
    monkeypatch.setattr(cluster, "time", clock)
    return submitted, clock


def _automl(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from automl.cli import main

    monkeypatch.setattr(sys, "argv", ["automl", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    out = capsys.readouterr()
    return exited.value.code or 0, out.out, out.err


def test_submit_waits_for_a_starting_job_agent(monkeypatch, capsys, tmp_path):
    submitted, clock = _starting_cluster(monkeypatch, refusals=4)
    monkeypatch.chdir(tmp_path)
    code, out, err = _automl(["submit", "--address", "127.0.0.1:8265", "--", "automl", "run", "-e", "x.yaml"], monkeypatch, capsys)
    assert code == 0, err
    assert submitted == ["refused"] * 4 + ["automl run -e x.yaml"]
    assert "submitted job raysubmit_started to http://127.0.0.1:8265" in out
    assert err == "waiting for the job agent of the cluster at http://127.0.0.1:8265 to start (up to 60 s)\n"
    assert clock.pauses == [1, 2, 4, 8]  # backing off


def test_submit_gives_up_on_a_job_agent_that_never_starts(monkeypatch, capsys, tmp_path):
    submitted, clock = _starting_cluster(monkeypatch, refusals=10**6)
    monkeypatch.chdir(tmp_path)
    code, _, err = _automl(["submit", "--address", "127.0.0.1:8265", "--", "automl", "run"], monkeypatch, capsys)
    assert code == 2
    waiting, refusal = err.splitlines()
    assert waiting.startswith("waiting for the job agent") and refusal.startswith("error: the cluster at http://127.0.0.1:8265 still has no job agent after 60 s")
    assert sum(clock.pauses) == pytest.approx(cluster.AGENT_WAIT_S) and max(clock.pauses) == cluster.AGENT_MAX_PAUSE_S
    assert len(submitted) == len(clock.pauses) + 1


# ---- a real two-node cluster -------------------------------------------------------------------------------

# Ray turns 127.0.0.1 into the machine's outward address (its nodes must reach each other); another loopback
# address is kept as given, so every node and connection below stays on loopback.
NODE_IP = "127.0.0.2"


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...]; starttime is index 19."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _descendants(pids: list[int]) -> dict[int, str]:
    """Every live process below `pids` with its start time (Ray's job drivers start sessions of their own,
    so a group kill misses them); the start time tells a later kill that a pid was not reused meanwhile."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        try:
            fields = _stat(int(entry.name))
        except (OSError, ValueError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        started[int(entry.name)] = fields[19]
    found, todo = {}, list(pids)
    while todo:
        pid = todo.pop()
        found[pid] = started.get(pid, "")
        todo.extend(children.get(pid, []))
    return found


def _kill_if_same(pid: int, started: str) -> None:
    try:
        if _stat(pid)[19] == started:
            os.kill(pid, signal.SIGKILL)
    except (OSError, IndexError):
        pass


class LocalCluster:
    """A head and a worker node, each a `ray start --block` process group of its own with a private temp dir,
    token auth on: stopping them touches no other Ray instance on this machine. The nodes must not share a
    temp dir: each node's runtime-env agent deletes the unpacked working dir when its own tasks are done."""

    def __init__(self, cpus_per_node: int = 1) -> None:
        self.cpus_per_node = cpus_per_node
        self.token = secrets.token_hex(32)
        self.root = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths live under it
        self.gcs, self.dashboard_port = _free_port(), _free_port()
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
        # the job's `automl run` must be on the nodes' PATH, as `pip install` puts it on a real cluster
        self.env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "PATH": f"{BIN}:{env.get('PATH', '')}"}
        self.worker: subprocess.Popen | None = None
        self.head = self._start("head", "--head", f"--port={self.gcs}", "--dashboard-host=127.0.0.1",
                                f"--dashboard-port={self.dashboard_port}", f"--ray-client-server-port={_free_port()}")
        try:
            self._wait_for(self._gcs_listens, "the head's GCS")
            self.worker = self._start("worker", f"--address={NODE_IP}:{self.gcs}")
            self._wait_for(lambda: len(self.alive_nodes()) == 2, "both nodes alive on the dashboard")
        except BaseException:
            self.stop()
            raise

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        """One node: `ray start --block` in a process group of its own, logging to the private temp dir."""
        node = [f"--node-ip-address={NODE_IP}", f"--num-cpus={self.cpus_per_node}", f"--temp-dir={self.root / name}",
                f"--dashboard-agent-listen-port={_free_port()}", "--disable-usage-stats", "--block"]
        with (self.root / f"{name}.log").open("w") as log:
            return subprocess.Popen([str(BIN / "ray"), "start", *args, *node], env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)

    def _gcs_listens(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex((NODE_IP, self.gcs)) == 0

    def _get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=5)

    def _wait_for(self, ready, what: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, name in ((self.head, "head"), (self.worker, "worker")):
                if proc is not None and proc.poll() is not None:
                    pytest.fail(f"ray start ({name}) exited: " + (self.root / f"{name}.log").read_text()[-3000:])
            try:
                if ready():
                    return
            except (requests.RequestException, KeyError, ValueError):
                pass  # not up yet: refused, or the state API answering before it has nodes
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}")

    def alive_nodes(self) -> list[dict]:
        nodes = self._get("/api/v0/nodes").json()["data"]["result"]["result"]
        return [n for n in nodes if n["state"] == "ALIVE"]

    def worker_set_up_a_job(self) -> bool:
        """Ray writes runtime_env_setup-<job>.log on a node where it started a process of that job."""
        return any((self.root / "worker").glob("session_*/logs/runtime_env_setup-*.log"))

    def stop(self) -> None:
        """SIGTERM to both nodes' process groups, a short grace, then SIGKILL to whatever of ours is left."""
        started = [proc for proc in (self.worker, self.head) if proc is not None]
        everything = _descendants([proc.pid for proc in started])
        for proc in started:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid, started_at in everything.items():
            _kill_if_same(pid, started_at)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def local_cluster():
    if not sys.platform.startswith("linux"):
        pytest.skip("multi-node Ray on one machine needs Linux (a second loopback address, /proc)")
    started = LocalCluster()
    try:
        yield started
    finally:
        started.stop()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_node_cluster_runs_a_submitted_study(local_cluster, tiny_data, tmp_path):
    nodes = local_cluster.alive_nodes()
    assert len(nodes) == 2 and {n["node_ip"] for n in nodes} == {NODE_IP}
    assert local_cluster._get("/api/version").ok and requests.get(local_cluster.url + "/api/version", timeout=5).status_code == 401

    study = tmp_path / "study"
    args = [*TINY, *data_args(tiny_data), "automl.max_trials=2", "automl.max_epochs=1", "automl.grace_period=1", "automl.cpus_per_trial=1", "automl.max_concurrent=2",
            "automl.hyperparameters=[train.lr,train.loss_mil_weight]", f"results_dir={study}"]
    token = {"RAY_AUTH_TOKEN": local_cluster.token}
    # from the repository root: its experiments/ folder travels as the job's working dir
    done = run_cli("automl", "submit", "--address", local_cluster.url, "--wait", "--",
                   "automl", "run", "--model", "mal", "-e", "experiments/mal_demo.yaml", *args, cwd=ROOT, env=token, timeout=240)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    job_id = done.stdout.split("submitted job ", 1)[1].split()[0]
    assert "best trial" in done.stdout  # the job's own output, streamed back
    doc = json.loads((study / "study.json").read_text())
    assert doc["status"] == "completed"
    rows = list(csv.DictReader((study / "leaderboard.csv").open()))
    assert len(rows) == 2 and all(r["status"] in ("COMPLETED", "STOPPED") for r in rows), rows
    assert (study / "best" / "model.pth").is_file()
    assert local_cluster.worker_set_up_a_job()  # one CPU per node: the second concurrent trial ran on the worker

    status = run_cli("automl", "submit", "--address", local_cluster.url, "--status", job_id, env=token)
    assert status.returncode == 0 and f"job {job_id} SUCCEEDED" in status.stdout, status.stdout + status.stderr
    stop = run_cli("automl", "submit", "--address", local_cluster.url, "--stop", job_id, env=token)
    assert stop.returncode == 0 and "not running" in stop.stdout, stop.stdout + stop.stderr
    refused = run_cli("automl", "submit", "--address", local_cluster.url, "--status", job_id, "--token", "not-the-token")
    assert refused.returncode == 2 and "refused the auth token" in refused.stderr, refused.stderr
    no_token = run_cli("automl", "submit", "--address", local_cluster.url, "--status", job_id, env={"HOME": str(tmp_path)})
    assert no_token.returncode == 2 and "none was found" in no_token.stderr, no_token.stderr  # no bypass either
