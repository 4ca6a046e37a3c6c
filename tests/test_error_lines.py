"""Error lines keep what the user needs: a multi-line message keeps its path, an archive that is not one says
so with its path, and `champion` with no tracking database creates none."""

from __future__ import annotations

import pytest

from plumbing.cli import one_line
from plumbing.errors import UserError


def test_a_multi_line_message_keeps_its_first_line():
    assert one_line("/data/x.tar: cannot unpack\n- method gz: ReadError('not a gzip file')") == (
        "/data/x.tar: cannot unpack; - method gz: ReadError('not a gzip file')"
    )


def test_a_worker_traceback_keeps_the_error_itself():
    text = "Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n  File x\nbad image y"
    assert one_line(text) == "bad image y"


def test_control_characters_are_escaped():
    assert one_line("name\x00.png") == "name\\x00.png"


def test_an_archive_that_is_not_one_names_its_path(tmp_path, monkeypatch):
    from plumbing.storage import image_dir

    monkeypatch.setenv("MAL_CACHE_DIR", str(tmp_path / "cache"))
    archive = tmp_path / "images.tar.gz"
    archive.write_bytes(b"not an archive at all" * 10)
    with pytest.raises(UserError) as info:
        image_dir(str(archive))
    message = one_line(str(info.value))
    assert str(archive) in message and "not a tar archive" in message


def test_champion_without_a_tracking_database_creates_none(tmp_path, monkeypatch):
    from automl.tracking import resolve_model_uri

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(UserError, match="no tracking database at"):
        resolve_model_uri("models:/mal@champion")
    assert list(tmp_path.iterdir()) == []
