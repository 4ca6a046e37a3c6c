"""Mask2Former, the second model, without training: its TAO-named spec and the one-line errors of bad specs and
data, class indices, image sizing and batching, turning query outputs into instances, the registry record,
and automl choosing it from a spec alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pycocotools import mask as mask_utils

from automl.registry import get_model, model_for_spec
from automl.space import load_space_file, resolve_space
from mask2former.classes import class_indices, classes_of
from mask2former.data import InstanceImages, collate, eval_resize, scaled_size, train_resize
from mask2former.module import lr_factor
from mask2former.predict import image_instances
from mask2former.spec import ExperimentSpec, check_paths, load_spec, template
from plumbing.coco import load_coco
from plumbing.errors import UserError
from tests.conftest import ROOT, SHARED_DATA, run_cli

TAO = SHARED_DATA.parent / "reference" / "tao-files"
RECIPE = ROOT / "experiments" / "mask2former_coco128.yaml"


def tiny_args(data: Path) -> list[str]:
    """A Mask2Former that trains in seconds on the tiny synthetic set (96 px shapes, 4 categories)."""
    return [
        f"dataset.train.instance_json={data / 'train' / 'annotations.json'}", f"dataset.train.img_dir={data / 'train' / 'images'}",
        f"dataset.val.instance_json={data / 'val' / 'annotations.json'}", f"dataset.val.img_dir={data / 'val' / 'images'}",
        "dataset.train.num_workers=0", "dataset.val.num_workers=0", "dataset.test.num_workers=0",
        "dataset.train.batch_size=3", "dataset.val.batch_size=3",
        "dataset.augmentation.train_min_size=[64, 80]", "dataset.augmentation.train_max_size=96",
        "dataset.augmentation.train_crop_size=[64, 64]", "dataset.augmentation.test_min_size=64",
        "dataset.augmentation.test_max_size=96", "dataset.contiguous_id=true",
        "model.backbone.type=efficientnet-lite0", "model.mask_former.hidden_dim=32", "model.mask_former.nheads=4",
        "model.mask_former.num_object_queries=8", "model.mask_former.dim_feedforward=64", "model.mask_former.dec_layers=2",
        "model.mask_former.train_num_points=256", "model.sem_seg_head.num_classes=4", "model.sem_seg_head.convs_dim=32",
        "model.sem_seg_head.mask_dim=32", "model.sem_seg_head.transformer_enc_layers=1", "model.test_topk_per_image=10",
        "train.num_gpus=0", "train.optim.lr=1.0e-3", "train.optim.lr_scheduler=Warmuppoly", "train.clip_grad_norm=1.0",
    ]  # fmt: skip


def _write(tmp_path: Path, data: dict, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data) if name.endswith(".json") else yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------------------------------------- the spec


def test_the_template_loads_back_unchanged(tmp_path):
    text = template("train")
    assert text.startswith("# Mask2Former train spec") and "dataset.train.instance_json" in text.splitlines()[1]
    assert load_spec(_write(tmp_path, yaml.safe_load(text))) == ExperimentSpec()


def test_the_recipe_loads_and_names_taos_fields():
    spec = load_spec(RECIPE)
    assert spec.model.backbone.type == "efficientnet-lite0" and spec.model.mask_former.num_object_queries == 50
    assert spec.dataset.train.instance_json.endswith("coco128-seg/annotations/train.json")


def test_taos_own_default_loads_once_its_unsupported_modes_are_set(tmp_path):
    """TAO's schema default is panoptic on ADE: each of those is one line; set to instance and coco, it loads."""
    default = json.loads((TAO / "mask2former_train.schema.json").read_text())["default"]
    with pytest.raises(UserError) as caught:
        load_spec(_write(tmp_path, default))
    lines = caught.value.details
    assert any(line.startswith("model.mode: 'panoptic' is not supported") for line in lines)
    assert any(line.startswith("dataset.train.type: 'ade' is not supported") for line in lines)
    fixed = ["model.mode=instance", "model.backbone.type=swin", *(f"dataset.{s}.type=coco" for s in ("train", "val", "test"))]
    spec = load_spec(_write(tmp_path, default), fixed)
    assert spec.model.sem_seg_head.num_classes == 200 and spec.train.optim.milestones == [88, 96]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.mask_former.num_queries=10", "model.mask_former.num_queries: unknown key (did you mean 'model.mask_former.num_object_queries'?)"),
        ("model.mask_former.hidden_dim=100", "model.mask_former.hidden_dim: 100 must be a multiple of mask_former.nheads (8)"),
        ("model.backbone.type=efficientvit", "model.backbone.type: 'efficientvit': TAO's EfficientViT backbone is not available here"),
        ("model.backbone.type=resnet50", "model.backbone.type: 'resnet50' is not a backbone here"),
        ("model.mode=semantic", "model.mode: 'semantic' is not supported"),
        ("train.optim.momentum=1.0", "train.optim.momentum: 1.0 is not allowed"),
        ("train.optim.milestones=[96, 88]", "train.optim.milestones: [96, 88] must be increasing epochs"),
        ("train.distributed_strategy=fsdp", "train.distributed_strategy: 'fsdp' is not supported here"),
        ("dataset.augmentation.train_crop_size=[256]", "dataset.augmentation.train_crop_size: [256] must be [height, width]"),
        ("dataset.augmentation.test_min_size=800", "test_min_size: 800 must not exceed test_max_size"),
        ("dataset.pixel_std=[0.2, 0.0, 0.2]", "dataset.pixel_std: [0.2, 0.0, 0.2] must be positive"),
        ("model.backbone.swin.num_heads=[5, 6, 12, 24]", "num_heads: 5 does not divide stage 0's 96 channels"),
        ("train.validation_interval=40", "train.validation_interval: 40 must be at most num_epochs (30)"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_naming_the_key(override, expected, tmp_path):
    done = run_cli("mask2former", "train", "-e", str(RECIPE), override, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and expected in done.stderr, done.stderr


def test_several_problems_are_counted_then_listed(tmp_path):
    done = run_cli("mask2former", "train", "-e", str(RECIPE), "train.optim.lr=0", "model.mode=panoptic", cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "2 problems" in lines[0] and len(lines) == 3


def test_a_mal_spec_given_to_mask2former_fails_in_lines_not_a_traceback(tmp_path):
    done = run_cli("mask2former", "train", "-e", str(ROOT / "experiments" / "mal_coco128.yaml"), cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "dataset.train_ann_path: unknown key" in done.stderr


# ---------------------------------------------------------------------------------------------- inputs


def test_class_indices_follow_contiguous_id_and_class_agnostic():
    categories = {3: {}, 7: {}, 90: {}}
    assert class_indices(categories, contiguous=True, agnostic=False) == {3: 0, 7: 1, 90: 2}
    assert class_indices(categories, contiguous=False, agnostic=False) == {3: 3, 7: 7, 90: 90}
    assert class_indices(categories, contiguous=False, agnostic=True) == {3: 0, 7: 0, 90: 0}


def test_too_few_classes_for_the_categories_is_one_line_with_the_fix(shared_data):
    spec = load_spec(RECIPE, ["dataset.class_agnostic=false", "model.sem_seg_head.num_classes=80"])
    categories = load_coco(str(shared_data / "coco128-seg" / "annotations" / "val.json")).categories
    with pytest.raises(UserError, match=r"num_classes: 80 cannot hold the 80 categories \(class indices up to 90\); set "
                                        r"dataset.contiguous_id=true .* or set it to at least 91"):  # fmt: skip
        classes_of(spec, categories)
    assert max(classes_of(load_spec(RECIPE, ["dataset.class_agnostic=false", "model.sem_seg_head.num_classes=80",
                                             "dataset.contiguous_id=true"]), categories).values()) == 79  # fmt: skip


def test_inputs_are_checked_before_any_work(tmp_path, tiny_data):
    args = tiny_args(tiny_data)
    spec = load_spec(None, [*args, f"results_dir={tmp_path / 'out'}", "dataset.val.instance_json=''"])
    with pytest.raises(UserError, match=r"dataset.val.instance_json is required for `mask2former train`"):
        check_paths(spec, "train")
    boxes_only = json.loads((tiny_data / "val" / "annotations.json").read_text())
    for ann in boxes_only["annotations"]:
        del ann["segmentation"]
    path = _write(tmp_path, boxes_only, "boxes.json")
    spec = load_spec(None, [*args, f"results_dir={tmp_path / 'out'}", f"dataset.val.instance_json={path}"])
    with pytest.raises(UserError, match=r"has no instance masks .* \(label boxes with `mal inference` first\)"):
        check_paths(spec, "train")
    other = json.loads((tiny_data / "val" / "annotations.json").read_text())
    other["categories"].append({"id": 9, "name": "extra"})
    path = _write(tmp_path, other, "other.json")
    spec = load_spec(None, [*args, f"results_dir={tmp_path / 'out'}", f"dataset.val.instance_json={path}",
                            "model.sem_seg_head.num_classes=5"])  # fmt: skip
    with pytest.raises(UserError, match=r"dataset.train and dataset.val name different categories \(ids \[9\]"):
        check_paths(spec, "train")
    spec = load_spec(None, [*args, f"results_dir={tmp_path / 'out'}", "evaluate.checkpoint=/nowhere.pth"])
    with pytest.raises(UserError, match="evaluate.checkpoint: '/nowhere.pth' does not exist"):
        check_paths(spec, "evaluate")


def test_a_checkpoint_of_another_network_is_refused_before_evaluating(tmp_path, tiny_data):
    torch.save({"state_dict": {"net.model.model.x": torch.zeros(2)}}, tmp_path / "other.pth")
    spec = load_spec(None, [*tiny_args(tiny_data), f"results_dir={tmp_path / 'out'}", f"evaluate.checkpoint={tmp_path / 'other.pth'}"])
    with pytest.raises(UserError, match=r"does not fit the spec's model: it has no model\.model\.pixel_level_module"):
        check_paths(spec, "evaluate")
    torch.save({"student.w": torch.zeros(2)}, tmp_path / "mal.pth")
    spec = load_spec(None, [*tiny_args(tiny_data), f"results_dir={tmp_path / 'out'}", f"evaluate.checkpoint={tmp_path / 'mal.pth'}"])
    with pytest.raises(UserError, match=r"holds no Mask2Former network"):
        check_paths(spec, "evaluate")


# ---------------------------------------------------------------------------------------------- data and outputs


def test_resize_keeps_the_shortest_edge_unless_the_longest_would_pass_its_cap():
    assert scaled_size(480, 640, 240, 1000) == (240, 320)
    assert scaled_size(100, 1000, 100, 500) == (50, 500)


def test_items_and_batches_have_the_model_sizes(tiny_data):
    spec = load_spec(None, tiny_args(tiny_data))
    coco = load_coco(spec.dataset.train.instance_json, spec.dataset.train.img_dir)
    classes = classes_of(spec, coco.categories)
    a = spec.dataset.augmentation
    train = InstanceImages(coco, sorted(coco.images), classes, train_resize(a), spec.dataset.pixel_mean, spec.dataset.pixel_std)
    item = train[0]
    assert item["image"].shape[1:] == (64, 64) and item["masks"].shape[1:] == (64, 64)
    assert len(item["labels"]) == len(item["masks"]) and set(item["labels"].tolist()) <= {0, 1, 2, 3}
    test = InstanceImages(coco, sorted(coco.images), classes, eval_resize(a), spec.dataset.pixel_mean, spec.dataset.pixel_std, with_targets=False)
    batch = collate([test[0], test[1]])
    assert batch["pixel_values"].shape[-2:] == (64, 64) and "mask_labels" not in batch
    wide = {**test[0], "image": torch.zeros(3, 50, 70)}
    padded = collate([wide, test[1]])
    assert padded["pixel_values"].shape[-2:] == (64, 96)  # each side padded to a multiple of 32
    assert padded["pixel_mask"][0, :50, :70].all() and not padded["pixel_mask"][0, 50:].any()


def test_instances_are_cut_to_the_real_pixels_and_scored_by_class_and_mask():
    """A query whose mask covers the left half of the real image: its mask in the original image is that half,
    and its score is the class probability times the mean mask probability inside it."""
    queries, classes = 3, 2
    class_logits = torch.full((queries, classes + 1), -10.0)
    class_logits[0, 1] = 10.0  # query 0: class 1, sure
    mask_logits = torch.full((queries, 16, 24), -10.0)  # the batch is padded to 64 x 96 (1/4 scale: 16 x 24)
    mask_logits[0, :, :8] = 10.0  # the left half of the 16 x 16 real region (the image is 64 x 64 in the batch)
    found = image_instances(class_logits, mask_logits, (64, 96), (64, 64), (32, 32), top_k=2, valid_classes=torch.ones(classes))
    best = max(found, key=lambda i: i["score"])
    mask = mask_utils.decode(best["rle"])
    assert best["label"] == 1 and best["score"] == pytest.approx(1.0, abs=1e-3)
    assert mask.shape == (32, 32) and mask[:, :15].all() and not mask[:, 17:].any()
    none_valid = image_instances(class_logits, mask_logits, (64, 96), (64, 64), (32, 32), 2, torch.tensor([1.0, 0.0]))
    assert all(i["label"] == 0 for i in none_valid)  # class 1 names no category: never reported


def test_taos_schedules():
    multistep = load_spec(None, ["train.optim.milestones=[2, 4]", "train.optim.gamma=0.5"]).train.optim
    assert [lr_factor(s, 10, multistep, 6) for s in (0, 19, 20, 39, 40)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    poly = load_spec(None, ["train.optim.lr_scheduler=Warmuppoly"]).train.optim
    assert lr_factor(4, 10, poly, 5) == pytest.approx(0.5)  # half-way through the warmup epoch
    assert lr_factor(9, 10, poly, 5) == pytest.approx(1.0) and lr_factor(49, 10, poly, 5) == pytest.approx(0.0)


# ---------------------------------------------------------------------------------------------- through automl


def test_the_registry_record_reads_the_recipe():
    model = get_model("mask2former")
    spec = model.load_spec(RECIPE, [])
    assert model.default_metric == "mask_AP" and model.registered_name == "mask2former"
    assert model.role(spec, "epochs") == 30 and model.value_multiples(spec)["model.mask_former.hidden_dim"] == 8
    assert model.search_space.is_file()


def test_without_model_automl_takes_the_model_whose_spec_the_file_is(tmp_path):
    assert model_for_spec(None, RECIPE, [])[0].name == "mask2former"
    assert model_for_spec(None, ROOT / "experiments" / "mal_coco128.yaml", [])[0].name == "mal"
    with pytest.raises(UserError, match=r"train\.lrr: unknown key \(did you mean 'train\.lr'\?\)"):
        model_for_spec(None, ROOT / "experiments" / "mal_coco128.yaml", ["train.lrr=1"])  # MAL's own problem


def test_the_search_space_and_taos_schema_resolve_against_the_recipe():
    model = get_model("mask2former")
    spec = model.load_spec(RECIPE, [])
    space = resolve_space(model, load_space_file(model.search_space), spec, None, {})
    assert [p.name for p in space.params][0] == "train.optim.lr"
    rng = np.random.default_rng(0)
    for _ in range(5):
        model.with_values(spec, space.random_sample(rng))
    tao = load_space_file(TAO / "mask2former_train.schema.json")
    with pytest.raises(UserError, match="test_max_size low=32 is rejected by the spec: .* must not exceed test_max_size"):
        resolve_space(model, tao, spec, None, {})  # TAO's range reaches below the recipe's test_min_size
    narrowed = {"dataset.augmentation.test_max_size": {"low": 256, "high": 640},
                "dataset.augmentation.test_min_size": {"low": 128, "high": 256},
                "dataset.augmentation.train_max_size": {"low": 256, "high": 640}, "train.optim.momentum": {"high": 0.99}}  # fmt: skip
    space = resolve_space(model, tao, spec, None, narrowed)
    assert len(space.params) == 10
    for _ in range(5):
        model.with_values(spec, space.random_sample(rng))


def test_the_backbone_trains_at_its_own_lr_and_can_be_frozen():
    from mask2former.network import Mask2FormerNet

    spec = load_spec(RECIPE)
    net = Mask2FormerNet(spec.model, 1, spec.dataset.pixel_mean, spec.dataset.pixel_std)
    backbone, rest = net.param_groups(1e-3, 0.1, 0.05)
    in_backbone = sum(p.numel() for p in net.encoder.parameters() if p.requires_grad)
    assert sum(p.numel() for p in backbone["params"]) == in_backbone > 0 and backbone["lr"] == pytest.approx(1e-4)
    assert sum(p.numel() for p in rest["params"]) == sum(p.numel() for p in net.parameters()) - in_backbone
    assert net.freeze(["backbone"]) > 0 and not any(p.requires_grad for p in net.encoder.parameters())
    with pytest.raises(UserError, match="train.freeze: 'decoder' names no parameter"):
        net.freeze(["decoder"])


def test_swin_backbone_weights_load_from_our_files_and_bare_ones_a_foreign_layout_is_one_line(tmp_path):
    from mask2former.network import Mask2FormerNet
    from mask2former.pretrained import load_backbone

    small = ["model.backbone.type=swin", "model.backbone.swin.embed_dim=24", "model.backbone.swin.depths=[1, 1, 1, 1]",
             "model.backbone.swin.num_heads=[1, 2, 3, 6]", "model.mask_former.hidden_dim=32", "model.sem_seg_head.convs_dim=32"]  # fmt: skip
    spec = load_spec(None, small)
    net = Mask2FormerNet(spec.model, 2, spec.dataset.pixel_mean, spec.dataset.pixel_std)
    assert load_backbone(net, None) == ["no model.backbone.pretrained_weights: the backbone starts from random init"]
    encoder = {k: v for k, v in net.state_dict().items() if k.startswith("model.model.pixel_level_module.encoder.")}
    torch.save({"state_dict": {f"net.{k}": v for k, v in encoder.items()}}, tmp_path / "ours.pth")
    swin = "model.model.pixel_level_module.encoder.swin."
    bare = {k.removeprefix(swin): v for k, v in encoder.items() if k.startswith(swin)}  # a SwinModel's own file
    torch.save(bare, tmp_path / "bare.pth")
    for name, loaded in (("ours.pth", len(encoder)), ("bare.pth", len(bare))):
        lines = load_backbone(net, str(tmp_path / name))
        assert lines[0].startswith(f"backbone: loaded {loaded}/{len(encoder)} tensors"), lines
    torch.save({"layers.0.blocks.0.attn.qkv.weight": torch.zeros(72, 24)}, tmp_path / "release.pth")
    with pytest.raises(UserError, match="release.pth: no tensor fits the backbone"):
        load_backbone(net, str(tmp_path / "release.pth"))
