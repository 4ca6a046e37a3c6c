"""Distributed labeling: `inference.engine=ray` writes what the local engine writes, and no box is ever dropped."""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mal import runner
from mal.data import label_units
from mal.errors import UserError
from mal.module import MALModule
from mal.runner.ray_labeling import actor_resources, label_with_ray
from mal.spec import load_spec
from plumbing.coco import load_coco
from tests.conftest import TINY, data_args, run_cli


@pytest.fixture(scope="module")
def trained(demo_data, tmp_path_factory) -> Path:
    """A TINY MAL after one epoch on the demo set: real masks, cheap to make."""
    out = tmp_path_factory.mktemp("labeling")
    spec = load_spec(None, [*TINY, *data_args(demo_data), f"results_dir={out}", "train.num_epochs=1"])
    result = runner.fit(spec, enable_progress_bar=False)
    return result.train_dir / "mal_model_latest.pth"


def _inference_args(ann: Path, images: Path, checkpoint: Path, dump: str) -> list[str]:
    return [
        f"inference.ann_path={ann}", f"inference.img_dir={images}",
        f"inference.checkpoint={checkpoint}", f"inference.label_dump_path={dump}",
    ]


@pytest.mark.slow
def test_ray_engine_writes_the_local_engines_labels(trained, demo_data, tmp_path):
    """`mal inference inference.engine=ray` (2 actors) against the local engine on the demo validation set."""
    ann, images = demo_data / "val" / "annotations.json", demo_data / "val" / "images"
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(f"results_dir: {tmp_path}\n")
    local_args = [*TINY, *_inference_args(ann, images, trained, "local.json")]
    here = runner.infer(load_spec(spec_file, local_args))  # in-process: the CLI's own start-up is paid once, below
    distributed = run_cli(
        "mal", "inference", "-e", str(spec_file), *TINY, *_inference_args(ann, images, trained, "ray.json"),
        "inference.engine=ray", "inference.num_workers=2", timeout=300,
    )
    assert distributed.returncode == 0, distributed.stderr[-3000:]

    source = json.loads(ann.read_text())
    boxes, pictures = len(source["annotations"]), len(source["images"])
    assert (here["annotations"], here["images"], here["workers"]) == (boxes, pictures, "1 process")
    assert here["boxes_per_s"] > 0 and here["images_per_s"] > 0
    line = rf"labeled {boxes} boxes on {pictures} images in [\d.]+ s \([\d.]+ boxes/s, [\d.]+ images/s\) with 2 Ray actors"
    assert re.search(line, distributed.stdout), distributed.stdout

    by_local = json.loads((tmp_path / "inference" / "local.json").read_text())
    by_ray = json.loads((tmp_path / "inference" / "ray.json").read_text())
    assert by_ray["annotations"] == by_local["annotations"]  # ids, boxes, RLE counts, areas, scores: all of it
    assert [a["id"] for a in by_ray["annotations"]] == [a["id"] for a in source["annotations"]]
    assert by_ray["images"] == source["images"] and by_ray["categories"] == source["categories"]
    drawn = sum(a["area"] > 0 for a in by_ray["annotations"])
    assert drawn > boxes // 2  # the comparison is between real masks, not two sets of empty ones
    for name in ("local.json", "ray.json"):
        path = tmp_path / "inference" / name
        labels = COCO(str(path))  # the output is itself a COCO ground truth ...
        assert len(labels.getAnnIds()) == boxes
        results = COCO(str(ann)).loadRes(labels.dataset["annotations"])  # ... and a result set for COCOeval
        assert len(results.getAnnIds()) == boxes


def _blank_checkpoint(spec, path: Path) -> Path:
    """Weights whose mask head outputs zero everywhere: every pixel's probability is exactly 0.5."""
    net = MALModule(spec).net
    for part in (net.student, net.teacher):
        last = part.mask_head.convs[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    torch.save(net.state_dict(), path)
    return path


def test_boxes_with_empty_masks_are_all_written_in_input_order_and_counted(tiny_data, tmp_path, caplog):
    source = json.loads((tiny_data / "val" / "annotations.json").read_text())
    source["annotations"] = source["annotations"][::-1]  # not grouped the way the engine groups them
    ann = tmp_path / "shuffled.json"
    ann.write_text(json.dumps(source))
    overrides = [*TINY, f"results_dir={tmp_path}", "train.mask_thres=[0.6]", "inference.batch_size=2"]
    checkpoint = _blank_checkpoint(load_spec(None, overrides), tmp_path / "blank.pth")
    spec = load_spec(None, [*overrides, *_inference_args(ann, tiny_data / "val" / "images", checkpoint, "out.json")])

    with caplog.at_level(logging.WARNING, logger="mal"):
        summary = runner.infer(spec)

    boxes = len(source["annotations"])
    assert summary["annotations"] == summary["empty"] == boxes
    assert f"{boxes} of {boxes} boxes got an empty mask" in caplog.text
    written = json.loads(summary["path"].read_text())["annotations"]
    assert [a["id"] for a in written] == [a["id"] for a in source["annotations"]]
    for out, src in zip(written, source["annotations"], strict=True):
        assert (out["image_id"], out["category_id"], out["bbox"]) == (src["image_id"], src["category_id"], src["bbox"])
        assert out["area"] == 0 and out["score"] == 0.5
        assert not mask_utils.decode(out["segmentation"]).any()
    assert len(COCO(str(summary["path"])).getAnnIds()) == boxes


def test_units_keep_images_whole_and_every_box_once(tiny_data):
    coco = load_coco(str(tiny_data / "val" / "annotations.json"), str(tiny_data / "val" / "images"))
    per_image = Counter(a["image_id"] for a in coco.anns)
    assert max(per_image.values()) >= 3  # the fixture has images big enough to split
    for max_boxes in (1, 2, 3, 100):
        units = label_units(coco, max_boxes)
        ids = [box["id"] for unit in units for record in unit for box in record["boxes"]]
        assert sorted(ids) == sorted(a["id"] for a in coco.anns)
        assert all(sum(len(r["boxes"]) for r in unit) <= max_boxes for unit in units)
        pieces = Counter(r["image_id"] for unit in units for r in unit)
        assert {iid for iid, n in pieces.items() if n > 1} == {iid for iid, n in per_image.items() if n > max_boxes}
        json.dumps(units)  # plain data (paths and boxes): it travels to Ray actors as JSON, never as pixels
    assert len(label_units(coco, 100)) == 1


def test_actor_pool_follows_the_cluster_unless_told():
    cpu_spec = load_spec(None, ["inference.num_gpus=0"])
    assert actor_resources(cpu_spec, {"CPU": 8.0}) == (8, 1.0, 0.0)
    gpu_spec = load_spec(None, ["inference.num_gpus=1"])
    assert actor_resources(gpu_spec, {"CPU": 16.0, "GPU": 4.0}) == (4, 4.0, 1.0)
    assert actor_resources(gpu_spec, {"CPU": 4.0}) == (4, 1.0, 0.0)  # asked for GPUs, the cluster has none
    two = load_spec(None, ["inference.num_gpus=1", "inference.num_workers=2"])
    assert actor_resources(two, {"CPU": 3.0, "GPU": 1.0}) == (2, 1.5, 0.5)


def test_a_checkpoint_that_does_not_fit_fails_before_ray_starts(tmp_path, monkeypatch):
    import ray

    started = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: started.append(kwargs))
    overrides = [*TINY, f"results_dir={tmp_path}"]
    checkpoint = _blank_checkpoint(load_spec(None, overrides), tmp_path / "tiny.pth")
    spec = load_spec(None, [*overrides, "model.mask_head_out_channel=8", f"inference.checkpoint={checkpoint}"])
    with pytest.raises(UserError, match="does not fit model.arch"):
        label_with_ray(spec, [])
    assert started == []


def test_unknown_engine_is_refused_in_one_line():
    with pytest.raises(UserError, match=r"inference.engine: 'spark' is not allowed; expected 'local' or 'ray'"):
        load_spec(None, ["inference.engine=spark"])
