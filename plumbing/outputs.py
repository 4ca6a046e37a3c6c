"""Output locations checked before any work: a folder (or a file) where one can be written, and never one of
the inputs; local paths and object-store URIs alike."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from plumbing.errors import UserError
from plumbing.files import is_remote


def check_remote_folder(key: str, location: str) -> None:
    """An object store has no folders to make; a location holding an object cannot also be a prefix."""
    from plumbing.storage import remote_output_kind

    if remote_output_kind(location) == "file":
        raise UserError(f"{key}: {location!r} is a file, not a folder")


def check_remote_file(key: str, location: str, inputs: list[str | None]) -> None:
    """A cheap look at the store (the bucket is there, the name is no prefix of objects) and no input
    named; the write itself reports a refusal of these credentials."""
    from plumbing.storage import remote_output_kind

    for given in inputs:
        if given and is_remote(given) and given.rstrip("/") == location.rstrip("/"):
            raise UserError(f"{key}: {location!r} is also an input ({given}); it would be overwritten")
    if remote_output_kind(location) == "folder":
        raise UserError(f"{key}: {location!r} is a folder; the output is a file")


def check_folder(key: str, folder: Path) -> None:
    """`folder` is a folder, or can be made: its nearest existing ancestor is a folder we can write in."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{key}: {str(folder)!r} is a file, not a folder")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(f"{key}: {str(folder)!r} cannot be made: {str(existing)!r} is a file, not a folder")
    try:  # a real write: access() says yes to root on a read-only mount
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise UserError(f"{key}: cannot write in {str(existing)!r} ({exc.strerror or exc})") from None


def check_file(key: str, path: Path, inputs: list[str | None]) -> None:
    if path.is_dir():
        raise UserError(f"{key}: {str(path)!r} is a folder; the output is a file")
    check_folder(key, path.parent)
    for given in inputs:
        if given and not is_remote(given) and _same_file(path, Path(given.removeprefix("file://")).expanduser()):
            raise UserError(f"{key}: {str(path)!r} is also an input ({given}); it would be overwritten")


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
