"""Running on a Ray cluster: submit a command as a Ray Job (with the user's auth token), follow it, stop it;
and refuse a study folder that the cluster's hosts cannot all reach."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console

from plumbing.errors import UserError
from plumbing.files import is_remote

# Never uploaded with the working dir: environments, study outputs, data, VCS state (Ray also honours
# .gitignore). No trailing slashes: Ray matches each path without one, and skips a matched folder whole.
WORKING_DIR_EXCLUDES = [
    ".venv", "venv", ".git", "/runs", "/data", "mlruns", "mlartifacts", "mlflow.db", "test-artifacts",
    "bench/results", "*.pth", "*.ckpt", "*.pt", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info",
]
FORWARDED_ENV = ["MLFLOW_TRACKING_URI"]
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"

# Filesystem types (as /proc/mounts names them) whose files every host mounting them sees; any fuse.* type
# counts too (sshfs, s3fs, gcsfuse, juicefs, ceph-fuse, ...).
NETWORK_FILESYSTEMS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "wekafs"}


# ---- Ray Jobs -------------------------------------------------------------------------------------------


def auth_token(explicit: str | None = None) -> str | None:
    """The cluster token: --token, else where Ray itself looks ($RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH,
    ~/.ray/auth_token, the file `ray get-auth-token --generate` writes)."""
    if explicit:
        return explicit.strip()
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return os.environ["RAY_AUTH_TOKEN"].strip()
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if token_path:
        try:
            token = Path(token_path).expanduser().read_text().strip()
        except OSError as exc:
            raise UserError(f"RAY_AUTH_TOKEN_PATH={token_path} cannot be read: {exc.strerror}") from None
        if not token:
            raise UserError(f"RAY_AUTH_TOKEN_PATH={token_path} is empty")
        return token
    if DEFAULT_TOKEN_FILE.is_file():
        return DEFAULT_TOKEN_FILE.read_text().strip() or None
    return None


def dashboard_url(address: str) -> str:
    """The Jobs API lives on the head's dashboard; a bare host:port means its http URL."""
    address = address.strip().rstrip("/")
    return address if "://" in address else f"http://{address}"


@contextmanager
def _address_as_given() -> Iterator[None]:
    """Ray lets RAY_API_SERVER_ADDRESS / RAY_ADDRESS override the address a client is given; here the CLI
    already took them as --address's default, so an explicit --address must win."""
    saved = {k: os.environ.pop(k) for k in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextmanager
def _cluster_errors(address: str, token_sent: bool = True) -> Iterator[None]:
    """Ray's connection, auth and request failures as one line a user can act on."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError:
        problem = "refused the auth token" if token_sent else "needs an auth token and none was found"
        raise UserError(
            f"the cluster at {address} {problem}: pass the head's token with --token or RAY_AUTH_TOKEN "
            "(`ray get-auth-token` on the head prints it)"
        ) from None
    except ConnectionError:
        raise UserError(
            f"no Ray dashboard answers at {address}: start the cluster (`ray up cluster.yaml`), forward its "
            "dashboard (`ray dashboard cluster.yaml`), and pass its URL with --address"
        ) from None
    except (OSError, RuntimeError, ValueError) as exc:  # OSError: requests' and aiohttp's network errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"Ray Jobs request to {address} failed: {first}") from None


def _quiet_job_sdk() -> None:
    """Ray's job SDK logs every packaging step at INFO; the command prints what matters itself. The working
    dir module's one warning is about .git/.venv being left out, which WORKING_DIR_EXCLUDES asks for anyway."""
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray.dashboard.modules.job.sdk", "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("ray._private.runtime_env.working_dir").setLevel(logging.ERROR)


def job_client(address: str, token: str | None = None):
    """A JobSubmissionClient for the dashboard at `address`, sending the token as a bearer header."""
    from ray.job_submission import JobSubmissionClient

    _quiet_job_sdk()
    url = dashboard_url(address)
    secret = auth_token(token)
    headers = {"Authorization": f"Bearer {secret}"} if secret else None
    with _cluster_errors(url, token_sent=secret is not None), _address_as_given():
        return JobSubmissionClient(url, headers=headers)


def runtime_env(working_dir: Path) -> dict[str, Any]:
    """The job's code is the caller's folder (minus outputs and environments); MLflow's server travels along."""
    env_vars = {name: os.environ[name] for name in FORWARDED_ENV if os.environ.get(name)}
    return {
        "working_dir": str(working_dir.resolve()),
        "excludes": WORKING_DIR_EXCLUDES,
        **({"env_vars": env_vars} if env_vars else {}),
    }


# The dashboard answers before the head's job agent is up (a cluster just made by `ray up`); Ray's reply then
# (HTTP 500, after the dashboard itself waited 10 s for the agent) says to try again later.
AGENT_STARTING = "No available agent to submit job"
AGENT_WAIT_S = 60
AGENT_MAX_PAUSE_S = 15


def submit(
    address: str, entrypoint_args: Sequence[str], working_dir: Path, token: str | None = None, out: TextIO | None = None
) -> str:
    """Start `entrypoint_args` on the cluster as a Ray Job running in `working_dir`; returns the job id. While
    the head's job agent is still starting, tries again for up to AGENT_WAIT_S, saying so once on `out`."""
    if not entrypoint_args:
        raise UserError("nothing to submit: put the command after --, e.g. automl submit --address URL -- automl run -e SPEC")
    url = dashboard_url(address)
    client = job_client(url, token)
    env = runtime_env(working_dir)
    deadline = time.monotonic() + AGENT_WAIT_S
    pause = 1.0
    with _cluster_errors(url):
        while True:
            try:
                return client.submit_job(entrypoint=shlex.join(entrypoint_args), runtime_env=env)
            except RuntimeError as exc:
                if AGENT_STARTING not in str(exc):
                    raise
            left = deadline - time.monotonic()
            if left <= 0:
                raise UserError(
                    f"the cluster at {url} still has no job agent after {AGENT_WAIT_S} s: its head is still "
                    "starting or its dashboard agent died (see `ray status` and the head's "
                    "/tmp/ray/session_latest/logs/dashboard_agent.log)"
                )
            if pause == 1.0:
                print(f"waiting for the job agent of the cluster at {url} to start (up to {AGENT_WAIT_S} s)", file=out or sys.stderr, flush=True)
            time.sleep(min(pause, left))
            pause = min(pause * 2, AGENT_MAX_PAUSE_S)


def follow(address: str, job_id: str, token: str | None = None, out: TextIO = sys.stdout) -> int:
    """Stream the job's logs until it ends; 0 when it SUCCEEDED, 1 when it FAILED or was STOPPED."""
    from ray.job_submission import JobStatus

    url = dashboard_url(address)
    client = job_client(url, token)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()

    with _cluster_errors(url):
        try:
            asyncio.run(tail())
        except KeyboardInterrupt:
            print(f"stopped following; job {job_id} keeps running (stop it with --stop {job_id})", file=sys.stderr)
            raise
        info = client.get_job_info(job_id)
        deadline = time.monotonic() + 30  # the log stream closes as the job ends; its status may lag a moment
        while not info.status.is_terminal() and time.monotonic() < deadline:
            time.sleep(0.5)
            info = client.get_job_info(job_id)
    # the first line only: Ray appends the job's last logs, which were just streamed
    detail = f": {info.message.splitlines()[0]}" if info.message and info.status != JobStatus.SUCCEEDED else ""
    print(f"job {job_id} {info.status.value}{detail}", file=sys.stderr)
    return 0 if info.status == JobStatus.SUCCEEDED else 1


def status(address: str, job_id: str, token: str | None = None):
    """The job's JobInfo (status, entrypoint, message, start/end times)."""
    return _ask(address, token, lambda client: client.get_job_info(job_id))


def stop(address: str, job_id: str, token: str | None = None) -> bool:
    """Ask the cluster to stop the job; False when it had already ended."""
    return _ask(address, token, lambda client: client.stop_job(job_id))


def _ask(address: str, token: str | None, request: Callable[[Any], Any]) -> Any:
    url = dashboard_url(address)
    client = job_client(url, token)
    with _cluster_errors(url):
        return request(client)


# ---- shared storage ----------------------------------------------------------------------------------


def host_count(nodes: Sequence[dict[str, Any]]) -> int:
    """How many machines the alive Ray nodes run on (several nodes may share one host, and one disk)."""
    alive = [n for n in nodes if n.get("Alive")]
    addresses = {n.get("NodeManagerAddress") for n in alive}
    hostnames = {n.get("NodeManagerHostname") for n in alive}
    # either differing is taken as different machines: a wrong "shared" would lose checkpoints silently
    return max(len(addresses), len(hostnames))


def mount_table() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of this host's mounts; empty where /proc/mounts does not exist."""
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    table = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 3:
            # /proc/mounts writes spaces and tabs in paths as octal escapes (\040)
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[1])
            table.append((point, fields[2]))
    return table


def filesystem_type(path: Path, mounts: Sequence[tuple[str, str]]) -> str | None:
    """The type of the filesystem holding `path`: its longest mount-point prefix."""
    best: tuple[int, str] | None = None
    for point, fstype in mounts:
        if path.is_relative_to(point) and (best is None or len(point) > best[0]):
            best = (len(point), fstype)
    return best[1] if best else None


def is_shared_location(location: str | Path, mounts: Sequence[tuple[str, str]] | None = None) -> bool:
    """A path on a network filesystem."""
    fstype = filesystem_type(Path(location).expanduser().resolve(), mount_table() if mounts is None else mounts)
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."))


def check_shared_storage(
    results_dir: str | Path,
    tracking_uri: str,
    nodes: Sequence[dict[str, Any]] | None = None,
    mounts: Sequence[tuple[str, str]] | None = None,
    console: Console | None = None,
) -> None:
    """On a cluster spanning several hosts, refuse a study folder on a node-local disk (trials on other hosts
    write their checkpoints there) and warn when MLflow tracks to a file on the head.

    Object-store URIs are refused everywhere for now: the study folder is written through the local
    filesystem (atomic renames), so an s3:// results_dir would become a local folder named `s3:`."""
    if is_remote(results_dir):
        raise UserError(
            f"results_dir {results_dir}: an object-store URI cannot hold a study folder yet; use a path on a "
            "network filesystem mounted on every node (NFS, EFS, Lustre, ...), e.g. results_dir=/mnt/shared/runs/STUDY"
        )
    if nodes is None:
        import ray

        nodes = ray.nodes()
    hosts = host_count(nodes)
    if hosts <= 1:
        return  # every node sees this host's disk
    if not is_shared_location(results_dir, mounts):
        path = Path(results_dir).expanduser().resolve()
        fstype = filesystem_type(path, mount_table() if mounts is None else mounts) or "unknown"
        raise UserError(
            f"results_dir {path} is on a node-local disk ({fstype}) but the Ray cluster spans {hosts} hosts, "
            "whose trials could not write their checkpoints there: put results_dir on a network filesystem "
            "mounted at the same path on every node (NFS, EFS, Lustre, ...), e.g. results_dir=/mnt/shared/runs/STUDY"
        )
    if tracking_uri.startswith(("sqlite:", "file:")) or "://" not in tracking_uri:
        from automl.tracking import redact

        (console or Console(stderr=True)).print(
            f"[yellow]warning:[/] MLflow tracks to {redact(tracking_uri)}, a file on the head node that goes away "
            "with the cluster; point MLFLOW_TRACKING_URI (or --tracking-uri) at a tracking server (http://...)"
        )
