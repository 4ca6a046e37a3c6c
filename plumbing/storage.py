"""Data locations: local folders and files, `images.tar.gz` archives (unpacked once into a cache), and
remote URIs (s3://, gs://, https://) through fsspec when the matching extra is installed."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plumbing.errors import UserError
from plumbing.files import is_remote

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
CHAMPION = "champion"  # alone, a registered model's promoted version (models:/<name>@champion)
_EXTRA_FOR = {"s3": "s3", "gs": "gcs", "gcs": "gcs", "http": "http", "https": "http"}


def cache_root() -> Path:
    return Path(os.environ.get("MAL_CACHE_DIR", Path.home() / ".cache" / "automl-mal"))


def _filesystem(location: str):
    protocol = location.split(":", 1)[0]
    try:
        import fsspec

        return fsspec.filesystem(protocol)
    except (ImportError, ValueError):
        extra = _EXTRA_FOR.get(protocol, protocol)
        raise UserError(
            f"{location}: {protocol}:// needs its fsspec backend; install it with "
            f"pip install 'automl-mal[{extra}]'"
        ) from None


@contextmanager
def _store_errors(location: str, doing: str) -> Iterator[None]:
    """A remote store's failure (no credentials, no endpoint, no bucket, refused) as one line. Each backend
    (botocore, gcsfs, aiohttp) has its own exception types, so any exception counts; the message names it."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # any backend's type, as the docstring says
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{location}: cannot {doing} ({type(exc).__name__}: {reason})") from None


def is_registered_model(location: str) -> bool:
    """`champion` or `models:/...`: a model registry reference, not a file (each model resolves it to its own registered name)."""
    return location == CHAMPION or location.startswith("models:/")


def is_local_file(location: str | None) -> bool:
    """A path on this machine: set, not a URI, not a registered model (those are checked when fetched)."""
    return bool(location) and not is_remote(location) and not is_registered_model(location)


def resolve_registered(location: str, group: str, registered_name: str) -> str:
    """`location` as given, or the local weights file of a registered model reference, fetched by the resolver
    an installed package offers in the entry-point group `group` (automl does, through MLflow)."""
    if not is_registered_model(location):
        return location
    from importlib.metadata import entry_points

    resolvers = list(entry_points(group=group))
    if not resolvers:
        raise UserError(f"{location}: registered models need the automl package (MLflow registry); none is installed")
    return resolvers[0].load()(f"models:/{registered_name}@{CHAMPION}" if location == CHAMPION else location)


def exists(location: str) -> bool:
    if is_remote(location):
        fs = _filesystem(location)
        with _store_errors(location, "reach it"):
            return bool(fs.exists(location))
    return Path(location.removeprefix("file://")).expanduser().exists()


def _cache_key(location: str) -> str:
    if is_remote(location):
        fs = _filesystem(location)
        with _store_errors(location, "read it"):
            info = fs.info(location)
        stamp = f"{info.get('size')}-{info.get('ETag') or info.get('mtime') or info.get('LastModified')}"
    else:
        st = Path(location).stat()
        stamp = f"{st.st_size}-{st.st_mtime_ns}"
    return hashlib.sha256(f"{location}|{stamp}".encode()).hexdigest()[:16]


def _download(location: str) -> Path:
    """A remote file, copied once into the cache."""
    target = cache_root() / "files" / _cache_key(location) / Path(location.rstrip("/")).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fs = _filesystem(location)
        with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
            try:
                with _store_errors(location, "download it"), fs.open(location, "rb") as src:
                    shutil.copyfileobj(src, tmp)
            except UserError:
                os.unlink(tmp.name)
                raise
        os.replace(tmp.name, target)
    return target


def write_remote_text(location: str, text: str) -> str:
    """A text file written to an object store (the store makes the write atomic: a failed upload leaves no
    object behind)."""
    fs = _filesystem(location)
    with _store_errors(location, "write it"), fs.open(location, "w", encoding="utf-8") as out:
        out.write(text)
    return location


def remote_output_kind(location: str) -> str | None:
    """What an output URI names now: "file", "folder" (a prefix holding objects) or None (nothing yet).

    Cheap reads only, no probe write: the bucket must exist and be visible with these credentials; whether
    they may also write is known at the write, which names the refusal in one line."""
    protocol = location.split(":", 1)[0]
    if protocol in ("http", "https"):
        raise UserError(f"{location}: an http(s) location can be read, not written; write to a path or an object store")
    fs = _filesystem(location)
    with _store_errors(location, "reach it"):
        from fsspec.core import strip_protocol

        bucket = strip_protocol(location).split("/", 1)[0]
        if not fs.exists(bucket):
            raise UserError(f"{location}: bucket {bucket!r} does not exist or these credentials cannot see it")
        if fs.isdir(location):
            return "folder"
        return "file" if fs.isfile(location) else None


def local_file(location: str) -> Path:
    """A readable local path for a file location (remote files are cached)."""
    if is_remote(location):
        return _download(location)
    path = Path(location.removeprefix("file://")).expanduser()
    if path.exists() and not path.is_file():  # a FIFO would block the read forever
        raise UserError(f"{location}: not a regular file (a folder, pipe or device)")
    if not path.is_file():
        raise UserError(f"{location}: file not found")
    return path


def image_dir(location: str) -> Path:
    """A local folder of images for a folder, archive or remote location; archives unpack once."""
    if location.endswith(ARCHIVE_SUFFIXES):
        archive = local_file(location)
        target = cache_root() / "archives" / _cache_key(str(archive))
        if not (target / ".complete").exists():
            _unpack(archive, target)
        return _single_child_dir(target)
    if is_remote(location):
        fs = _filesystem(location)
        target = cache_root() / "dirs" / _cache_key(location)
        if not (target / ".complete").exists():
            with _store_errors(location, "download it"):
                fs.get(location.rstrip("/") + "/", str(target), recursive=True)
            (target / ".complete").touch()
        return target
    path = Path(location.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise UserError(f"{location}: image folder not found")
    return path


def _unpack(archive: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths and ../ members
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        # tarfile's ReadError lists every compression it tried, one per line; the gist is that none fitted
        reason = "not a tar archive, plain or compressed" if isinstance(exc, tarfile.ReadError) else " ".join(str(exc).split())
        raise UserError(f"{archive}: cannot unpack image archive ({reason})") from None
    (staging / ".complete").touch()
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def _single_child_dir(root: Path) -> Path:
    """`images.tar.gz` often wraps one top folder (images/); use it when it is the only entry."""
    entries = [p for p in root.iterdir() if p.name != ".complete"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return root
