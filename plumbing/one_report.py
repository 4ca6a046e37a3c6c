"""One report of a user error for a whole multi-process (DDP) run.

Lightning starts ranks 1..N-1 as copies of the command, so a bad image that every rank reads is reported by
every rank, and a bad image that one rank alone reads leaves rank 0 with only a peer's dropped connection (a
long traceback). The command's first process makes a folder and names it in the environment its ranks
inherit; the first process to report an error claims a file in it, and the others end with the same exit
code without a word."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

MARKER_ENV = "PLUMBING_ONE_REPORT"
CLAIM_FILE = "reported"


@contextmanager
def shared_marker() -> Iterator[None]:
    """Around a command: the process that starts it makes the folder (and removes it and its name after);
    processes it starts (DDP ranks) find the name set and share the folder."""
    if os.environ.get(MARKER_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="plumbing-report-")
    os.environ[MARKER_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(MARKER_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def claim(code: int) -> bool:
    """True for the first process of the command to report an error (and for every process without a
    folder); the claim keeps the exit code for the processes that stay silent."""
    folder = os.environ.get(MARKER_ENV)
    if not folder:
        return True
    try:
        fd = os.open(os.path.join(folder, CLAIM_FILE), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except (FileExistsError, FileNotFoundError):  # reported already; or the command is over (folder gone)
        return False
    except OSError:
        return True  # no claim can be made: better twice than never
    with os.fdopen(fd, "w") as claimed:
        claimed.write(str(code))
    return True


def reported_elsewhere() -> int | None:
    """The exit code another process of the command reported its error with, or None."""
    folder = os.environ.get(MARKER_ENV)
    if not folder:
        return None
    try:
        with open(os.path.join(folder, CLAIM_FILE)) as claimed:
            text = claimed.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else 2  # claimed, its code not written yet
