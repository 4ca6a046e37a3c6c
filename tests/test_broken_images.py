"""A broken training or validation image ends the command in one error line and exit code 2: a truncated BMP
before any work (its header states its size), a PNG whose pixel data is garbage when it is decoded, also
under DDP, where every rank is a copy of the command and one rank alone may read the image."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plumbing import one_report
from plumbing.cli import one_line
from tests.conftest import TINY, run_cli

GOOD = Path(__file__).parent / "bad_inputs" / "good"


def _png_with_garbage_pixels(width: int, height: int) -> bytes:
    """A PNG whose header, chunk CRCs and end marker are right but whose compressed pixels are noise:
    opening it works, decoding it fails."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    noise = np.random.default_rng(0).bytes(400)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", noise) + chunk(b"IEND", b"")


def test_a_truncated_bmp_is_refused_before_training(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    shutil.copytree(GOOD, data)
    doc = json.loads((data / "annotations.json").read_text())
    image = doc["images"][0]
    png = data / "images" / image["file_name"]
    whole = io.BytesIO()
    Image.open(png).convert("RGB").save(whole, "BMP")
    (data / "images" / "cut.bmp").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    image["file_name"] = "cut.bmp"
    (data / "annotations.json").write_text(json.dumps(doc))

    from mal.cli import main

    ann, images = data / "annotations.json", data / "images"
    monkeypatch.setattr(sys, "argv", [
        "mal", "train", "-e", str(GOOD / "spec.yaml"), f"results_dir={tmp_path / 'run'}",
        f"dataset.train_ann_path={ann}", f"dataset.train_img_dir={images}",
        f"dataset.val_ann_path={GOOD / 'annotations.json'}", f"dataset.val_img_dir={GOOD / 'images'}",
    ])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1, err
    assert f"cut.bmp (image id {image['id']}) is cut short (a BMP file of" in err
    assert not (tmp_path / "run" / "train").exists()  # refused before any work


@pytest.mark.slow
def test_a_png_that_cannot_be_decoded_is_one_line_under_ddp(tiny_data, tmp_path):
    """Two DDP ranks, data-loader workers, and the broken image behind one box only: whichever rank
    draws it, the command says so once (the other rank's dropped connection says nothing)."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    doc = json.loads((data / "train" / "annotations.json").read_text())
    image = doc["images"][0]
    boxes = [a for a in doc["annotations"] if a["image_id"] == image["id"]]
    keep = max(boxes, key=lambda a: a["bbox"][2] * a["bbox"][3])  # the largest: it passes min_obj_size
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != image["id"] or a is keep]
    (data / "train" / "annotations.json").write_text(json.dumps(doc))
    broken = data / "train" / "images" / image["file_name"]
    broken.write_bytes(_png_with_garbage_pixels(image["width"], image["height"]))

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"results_dir: {tmp_path / 'run'}\n")
    done = run_cli(
        "mal", "train", "-e", str(spec), *TINY, "dataset.num_workers_per_gpu=1", "train.cpu_processes=2", "train.num_epochs=1",
        f"dataset.train_ann_path={data / 'train' / 'annotations.json'}", f"dataset.train_img_dir={data / 'train' / 'images'}",
        f"dataset.val_ann_path={data / 'val' / 'annotations.json'}", f"dataset.val_img_dir={data / 'val' / 'images'}",
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    assert done.returncode == 2, done.stderr[-3000:]
    assert errors == [f"error: {broken}: cannot read image (broken data stream when reading image file)"], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "[rank" not in done.stderr, done.stderr[-3000:]


def test_one_process_of_a_command_reports_and_the_others_keep_quiet(monkeypatch):
    monkeypatch.delenv(one_report.MARKER_ENV, raising=False)
    assert one_report.claim(2) and one_report.reported_elsewhere() is None  # no command around: always report
    with one_report.shared_marker():
        folder = Path(os.environ[one_report.MARKER_ENV])
        with one_report.shared_marker():  # a rank started by the command shares the folder
            assert os.environ[one_report.MARKER_ENV] == str(folder)
        assert one_report.reported_elsewhere() is None
        assert one_report.claim(2) and not one_report.claim(2)
        assert one_report.reported_elsewhere() == 2
        shutil.rmtree(folder)  # the command has ended: a rank still running stays quiet
        assert not one_report.claim(2)
    assert one_report.MARKER_ENV not in os.environ and not folder.exists()


def test_a_worker_traceback_becomes_its_message_without_the_exception_name():
    shown = "Caught UserError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n  ...\n"
    assert one_line(shown + "plumbing.errors.UserError: a/0001.png: cannot read image (x)") == "a/0001.png: cannot read image (x)"
    assert one_line("0001.png: cannot read image (x)") == "0001.png: cannot read image (x)"
