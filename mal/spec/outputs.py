"""Output locations, checked before any work: each is a folder (or a file) where one can be written, and
never one of the inputs. An OS error after an hour of inference would lose the hour."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mal.spec.schema import ExperimentSpec
from plumbing.errors import UserError
from plumbing.files import is_remote

METRICS_FILE = "metrics.json"


def label_dump_location(spec: ExperimentSpec) -> str:
    """Where `mal inference` writes its json: a URI as given, a relative path under the inference folder."""
    target = spec.inference.label_dump_path
    if is_remote(target) or Path(target).is_absolute():
        return target
    return str(spec.output_dir("inference") / target)


def check_outputs(spec: ExperimentSpec, action: str, inputs: list[str | None]) -> None:
    """The action's output folder can be written, its output file is not a folder, and no output is an input."""
    folder_key = f"{action}.results_dir" if getattr(spec, action).results_dir else "results_dir"
    if action == "inference":
        target = label_dump_location(spec)
        if is_remote(target):
            return  # an object store has no folders to check; the write reports its own error
        check_file("inference.label_dump_path", Path(target), inputs)
        return
    folder = spec.output_dir(action)
    check_folder(folder_key, folder)
    if action == "evaluate":
        check_file(folder_key, folder / METRICS_FILE, inputs)


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
