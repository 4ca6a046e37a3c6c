"""Output locations, checked before any work: each is a folder (or a file) where one can be written, and
never one of the inputs. An OS error after an hour of inference would lose the hour."""

from __future__ import annotations

from pathlib import Path

from mal.spec.schema import ExperimentSpec
from plumbing.errors import UserError
from plumbing.files import is_remote
from plumbing.outputs import check_file, check_folder, check_remote_file, check_remote_folder

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
