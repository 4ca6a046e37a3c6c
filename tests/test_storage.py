"""Data locations: folders, images.tar.gz archives unpacked once into a cache, remote URIs need their extra."""

from __future__ import annotations

import tarfile

import pytest

from mal.errors import UserError
from plumbing import storage


def test_archive_is_unpacked_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("MAL_CACHE_DIR", str(tmp_path / "cache"))
    images = tmp_path / "images"
    images.mkdir()
    (images / "a.png").write_bytes(b"png")
    archive = tmp_path / "images.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(images, arcname="images")
    first = storage.image_dir(str(archive))
    assert (first / "a.png").read_bytes() == b"png"
    (first / "a.png").write_bytes(b"cached")  # a second call must not unpack again
    assert (storage.image_dir(str(archive)) / "a.png").read_bytes() == b"cached"


def test_archive_members_cannot_escape(tmp_path, monkeypatch):
    monkeypatch.setenv("MAL_CACHE_DIR", str(tmp_path / "cache"))
    evil = tmp_path / "evil.tar.gz"
    payload = tmp_path / "x.txt"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped.txt")
    with pytest.raises(UserError, match="cannot unpack"):
        storage.image_dir(str(evil))
    assert not (tmp_path / "escaped.txt").exists()


def test_missing_locations_and_unknown_protocols(tmp_path):
    assert not storage.exists(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="image folder not found"):
        storage.image_dir(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="pip install 'automl-mal\\[nosuch\\]'"):
        storage.exists("nosuch://bucket/x")


def test_cluster_config_is_a_ray_cluster_config():
    import yaml

    from tests.conftest import ROOT

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["head_node_type"] in config["available_node_types"]
    assert {"cluster_name", "provider", "setup_commands"} <= set(config)
