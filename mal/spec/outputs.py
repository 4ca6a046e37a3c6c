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


def output_location(spec: ExperimentSpec, action: str) -> str:
    """Where an action writes, as a path or a URI (pathlib would fold `s3://b/x` into `s3:/b/x`)."""
    own = getattr(spec, action).results_dir
    if own and is_remote(own):
        return own.rstrip("/")
    if not own and is_remote(spec.results_dir):
        return f"{spec.results_dir.rstrip('/')}/{action}"
    return str(spec.output_dir(action))


def join(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}" if is_remote(location) else str(Path(location) / name)


def label_dump_location(spec: ExperimentSpec) -> str:
    """Where `mal inference` writes its json: a URI or absolute path as given, a relative path under the
    inference folder."""
    target = spec.inference.label_dump_path
    if is_remote(target) or Path(target).is_absolute():
        return target
    return join(output_location(spec, "inference"), target)


def metrics_location(spec: ExperimentSpec) -> str:
    return join(output_location(spec, "evaluate"), METRICS_FILE)


def check_outputs(spec: ExperimentSpec, action: str, inputs: list[str | None]) -> None:
    """The action's output folder can be written, its output file is not a folder, and no output is an input."""
    folder_key = f"{action}.results_dir" if getattr(spec, action).results_dir else "results_dir"
    if action == "inference":
        target = label_dump_location(spec)
        if is_remote(target):
            check_remote_file("inference.label_dump_path", target, inputs)
        else:
            check_file("inference.label_dump_path", Path(target), inputs)
        return
    location = output_location(spec, action)
    if is_remote(location):
        if action == "train":  # checkpoints, logs and resuming all go through the local filesystem
            raise UserError(
                f"{folder_key}: {getattr(spec, action).results_dir or spec.results_dir!r} is an object-store URI; "
                "`mal train` writes its checkpoints to a "
                "local or mounted folder (its inputs may be URIs)"
            )
        check_remote_folder(folder_key, location)
        check_remote_file(folder_key, metrics_location(spec), inputs)
        return
    check_folder(folder_key, Path(location))
    if action == "evaluate":
        check_file(folder_key, Path(metrics_location(spec)), inputs)


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
