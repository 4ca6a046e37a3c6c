"""SIGINT and SIGTERM for the commands that do long work: the work stops where it can stop cleanly (a
training at its next optimizer step, a study once Ray Tune has saved its state), the command says what was
kept in one line, and the process exits 128 + the signal's number (130, 143), as a shell reports it.

Signal handlers belong to the process, so the stop request is process state too: one handler records it,
the code that can stop cleanly polls `requested()` inside `deferred()`.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop signal ended the command. A BaseException, like KeyboardInterrupt, so that no `except Exception`
    on the way (a tracking retry, a library's error handling) mistakes the stop for a failure and carries on."""

    def __init__(self, signum: int, detail: str = "", echo: bool = True) -> None:
        self.signum, self.detail = int(signum), detail
        self.echo = echo  # False where another process of the same command (DDP rank 0) says it
        super().__init__(f"stopped by {signal.Signals(signum).name}" + (f": {detail}" if detail else ""))

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _StopRequest:
    def __init__(self) -> None:
        self.handling = 0  # nesting depth of `handled()`
        self.deferring = 0  # nesting depth of `deferred()`
        self.signum: int | None = None

    def handler(self, signum: int, frame: object) -> None:
        if self.signum is None and self.deferring:
            self.signum = signum  # the code under `deferred()` stops at its next clean point
            return
        # nothing under way can stop cleanly, or this is a second signal: stop here
        raise Interrupted(self.signum or signum)


_request = _StopRequest()


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def handled() -> Iterator[None]:
    """SIGINT and SIGTERM raise `Interrupted` (or are deferred, see below) while inside; the previous handlers
    come back after. Only the main thread can own signals: elsewhere (a Ray worker's thread) this does nothing."""
    if not _main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    _request.handling += 1
    if _request.handling == 1:
        _request.signum = None
    reclaim()
    try:
        yield
    finally:
        _request.handling -= 1
        for s, h in previous.items():
            signal.signal(s, h)


def reclaim() -> None:
    """Our handlers back in place after a library put its own there: `ray.init` (whose SIGTERM handler exits
    at once and whose core worker prints a C++ stack) and Lightning's fit (whose SIGTERM stop can fall in the
    middle of a validation and then exits 0)."""
    if _request.handling and _main_thread():
        for s in STOP_SIGNALS:
            signal.signal(s, _request.handler)


def handling() -> bool:
    """Whether this process turns stop signals into a clean stop (a command under `handled()`)."""
    return _request.handling > 0 and _main_thread()


@contextmanager
def deferred() -> Iterator[None]:
    """Inside, the first stop signal is only recorded: the code polls `requested()` and stops at its next
    clean point. A second signal stops at once. A signal that came before entering stops at once too."""
    if not handling():
        yield
        return
    if _request.signum is not None:
        raise Interrupted(_request.signum)
    _request.deferring += 1
    try:
        yield
    finally:
        _request.deferring -= 1


def requested() -> int | None:
    """The stop signal received so far under `handled()`, if any."""
    return _request.signum if handling() else None
