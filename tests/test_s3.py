"""s3:// for real: a moto S3 server on loopback, found through the standard AWS_ENDPOINT_URL. A study reads its
annotations and image archives from it, `mal inference` writes its labels there, and the credentials show up
nowhere: not in the output, the study's files, Ray's logs or MLflow's params."""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import BIN, TINY, run_cli

BUCKET = "mal-data"
SECRET = f"moto-secret-{secrets.token_hex(12)}"  # unique, so finding it anywhere is a leak


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(endpoint: str, server: subprocess.Popen) -> None:
    for _ in range(600):  # a start-up guard, not a timing check: moto answers within seconds
        if server.poll() is not None:
            pytest.fail(f"moto_server exited with {server.returncode}")
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers, if only to refuse a bare GET
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"moto_server did not answer at {endpoint}")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The S3 API on a free loopback port, with this module's environment pointing every client at it."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    import s3fs

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    home = tmp_path_factory.mktemp("aws")
    try:
        _wait_until_up(endpoint, server)
        with pytest.MonkeyPatch.context() as env:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
                env.delenv(name, raising=False)
            env.setenv("AWS_ENDPOINT_URL", endpoint)
            env.setenv("AWS_ACCESS_KEY_ID", "mal-test-key")
            env.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
            env.setenv("AWS_DEFAULT_REGION", "us-east-1")
            env.setenv("AWS_CONFIG_FILE", str(home / "config"))  # a developer's own profiles stay out of it
            env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
            env.setenv("MAL_CACHE_DIR", str(home / "cache"))
            s3fs.S3FileSystem.clear_instance_cache()  # clients made before this environment are not reused
            fs = s3fs.S3FileSystem()
            fs.mkdir(BUCKET)
            yield fs
            s3fs.S3FileSystem.clear_instance_cache()
    finally:
        server.terminate()
        server.wait(timeout=30)


def _upload_split(fs, data: Path, split: str, staging: Path) -> dict[str, str]:
    """The split's annotations and its images as `images.tar.gz` (one top folder, as people pack them)."""
    archive = staging / f"{split}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(data / split / "images", arcname="images")
    prefix = f"s3://{BUCKET}/{split}"
    fs.put(str(data / split / "annotations.json"), f"{prefix}/annotations.json")
    fs.put(str(archive), f"{prefix}/images.tar.gz")
    return {"ann": f"{prefix}/annotations.json", "img": f"{prefix}/images.tar.gz"}


def _files_holding(secret: str, *roots: Path) -> list[Path]:
    needle = secret.encode()
    return [p for root in roots for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
def test_a_study_reads_s3_and_inference_writes_its_labels_there(s3, tiny_data, tmp_path):
    from mlflow.tracking import MlflowClient
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    train, val = (_upload_split(s3, tiny_data, split, tmp_path) for split in ("train", "val"))
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"results_dir: {tmp_path / 'study'}\n")
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {"MLFLOW_TRACKING_URI": tracking, "RAY_TMPDIR": str(ray_tmp)}
    try:
        study = run_cli(
            "automl", "run", "--model", "mal", "-e", str(spec), *TINY,
            f"dataset.train_ann_path={train['ann']}", f"dataset.train_img_dir={train['img']}",
            f"dataset.val_ann_path={val['ann']}", f"dataset.val_img_dir={val['img']}",
            "automl.max_trials=1", "automl.max_epochs=1", "automl.grace_period=1", "automl.cpus_per_trial=1",
            "automl.hyperparameters=[train.lr]", env=env,
        )
        assert study.returncode == 0, study.stdout + study.stderr
        ray_leaks = _files_holding(SECRET, ray_tmp)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)

    out = f"s3://{BUCKET}/masks/out.json"
    labeled = run_cli(
        "mal", "inference", "-e", str(spec), *TINY, f"inference.ann_path={val['ann']}",
        f"inference.img_dir={val['img']}", f"inference.checkpoint={tmp_path / 'study' / 'best' / 'model.pth'}",
        f"inference.label_dump_path={out}", env=env,
    )
    assert labeled.returncode == 0, labeled.stderr
    source = json.loads((tiny_data / "val" / "annotations.json").read_text())
    assert f"wrote {len(source['annotations'])} annotations to {out}" in labeled.stdout

    s3.invalidate_cache()
    s3.get(out, str(tmp_path / "out.json"))
    labels = COCO(str(tmp_path / "out.json"))
    assert sorted(labels.getAnnIds()) == sorted(a["id"] for a in source["annotations"])
    sizes = {img["id"]: (img["height"], img["width"]) for img in source["images"]}
    masks = [mask_utils.decode(ann["segmentation"]) for ann in labels.dataset["annotations"]]
    assert all(m.shape == sizes[a["image_id"]] for m, a in zip(masks, labels.dataset["annotations"], strict=True))
    assert sum(int(m.any()) for m in masks) > 0  # real masks, not empty ones

    for done in (study, labeled):
        assert SECRET not in done.stdout + done.stderr
    assert ray_leaks == []
    assert _files_holding(SECRET, tmp_path) == []  # the study folder, its logs, the MLflow database
    client = MlflowClient(tracking)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs  # the study was tracked, so the check below looked at something
    for run in runs:
        assert not any(SECRET in str(v) or k.startswith("AWS_") for k, v in run.data.params.items())


# ---- output locations on the store, refused before any work --------------------------------------------

GOOD = Path(__file__).parent / "bad_inputs" / "good"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from mal.model import build_mal
    from mal.spec import load_spec
    from plumbing.torch_files import save_atomic

    spec = load_spec(GOOD / "spec.yaml")
    return save_atomic(build_mal(spec.model, spec.dataset.crop_size).state_dict(), tmp_path_factory.mktemp("w") / "model.pth")


def _refused(argv: list[str], expect: str, monkeypatch, capsys) -> None:
    import sys

    from mal.cli import main

    monkeypatch.setattr(sys, "argv", ["mal", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert expect in err, err


def _spec_args(tmp_path: Path) -> list[str]:
    ann, images = GOOD / "annotations.json", GOOD / "images"
    return ["-e", str(GOOD / "spec.yaml"), f"dataset.val_ann_path={ann}", f"dataset.val_img_dir={images}", f"results_dir={tmp_path}"]


def test_remote_outputs_are_checked_on_the_store(s3, weights, tmp_path, monkeypatch, capsys):
    source = f"s3://{BUCKET}/checks/annotations.json"
    s3.put(str(GOOD / "annotations.json"), source)
    s3.pipe(f"s3://{BUCKET}/checks/labels/old.json", b"{}")
    s3.invalidate_cache()
    inference = ["inference", *_spec_args(tmp_path), f"inference.ann_path={source}",
                 f"inference.img_dir={GOOD / 'images'}", f"inference.checkpoint={weights}"]
    _refused([*inference, f"inference.label_dump_path={source}"], "is also an input", monkeypatch, capsys)
    _refused([*inference, f"inference.label_dump_path=s3://{BUCKET}/checks/labels"], "is a folder; the output is a file", monkeypatch, capsys)
    _refused([*inference, "inference.label_dump_path=s3://no-such-bucket/out.json"], "bucket 'no-such-bucket' does not exist", monkeypatch, capsys)
    _refused([*inference, "inference.label_dump_path=https://example.invalid/out.json"], "can be read, not written", monkeypatch, capsys)
    evaluate = ["evaluate", *_spec_args(tmp_path), f"evaluate.checkpoint={weights}"]
    _refused([*evaluate, f"evaluate.results_dir={source}"], "is a file, not a folder", monkeypatch, capsys)
    train = ["train", *_spec_args(tmp_path), f"dataset.train_ann_path={GOOD / 'annotations.json'}",
             f"dataset.train_img_dir={GOOD / 'images'}", f"results_dir=s3://{BUCKET}/runs"]
    _refused(train, "`mal train` writes its checkpoints to a local or mounted folder", monkeypatch, capsys)
    assert s3.cat(source) == (GOOD / "annotations.json").read_bytes()  # nothing was overwritten


def test_remote_output_locations_keep_their_scheme():
    from mal.spec import load_spec
    from mal.spec.outputs import label_dump_location, metrics_location

    spec = load_spec(None, ["results_dir=s3://b/run/", "inference.label_dump_path=out.json"])
    assert label_dump_location(spec) == "s3://b/run/inference/out.json"
    assert metrics_location(spec) == "s3://b/run/evaluate/metrics.json"
    own = load_spec(None, ["results_dir=/tmp/r", "evaluate.results_dir=s3://b/eval"])
    assert metrics_location(own) == "s3://b/eval/metrics.json"


def test_an_unreachable_store_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("s3fs")
    import s3fs

    from mal.errors import UserError
    from plumbing import storage

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        with pytest.raises(UserError) as refused:
            storage.exists(f"s3://{BUCKET}/x.json")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    message = str(refused.value)
    assert message.startswith(f"s3://{BUCKET}/x.json: cannot reach it (") and "\n" not in message
    assert SECRET not in message
