"""MAL's network: output shapes per size bucket, the EMA teacher, freezing and pretrained loading."""

from __future__ import annotations

import argparse

import pytest
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

import mal.pretrained
from mal.errors import UserError
from mal.metrics import area_bucket
from mal.model import MAL, MALNet, build_mal, freeze_stages
from mal.pretrained import load_pretrained
from mal.spec import ModelConfig

torch.set_num_threads(1)

CROP = 64
AREAS = torch.tensor([31.0**2, 32.0**2, 95.0**2, 96.0**2, 200.0**2])


def _net(**kw) -> MALNet:
    torch.manual_seed(0)
    return MALNet(
        "vit-micro/16",
        CROP,
        mask_head_num_convs=2,
        mask_head_hidden_channel=32,
        mask_head_out_channel=32,
        **kw,
    )


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, CROP, CROP, generator=torch.Generator().manual_seed(seed))


def _equal_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_every_size_bucket_gives_finite_varied_logits():
    net = _net().eval()
    with torch.no_grad():
        logits = net(_images(5), AREAS)
    assert net.output_size == 16 and logits.shape == (5, 1, 16, 16)
    assert torch.isfinite(logits).all()
    assert (logits.flatten(1).std(1) > 0).all()  # the original gave exactly-32² and 96² boxes a constant 0


def test_buckets_are_half_open_and_batched_in_input_order():
    net = _net().eval()
    images = _images(5)
    with torch.no_grad():
        batched = net(images, AREAS)
        alone = [net(images[i : i + 1], AREAS[i : i + 1]) for i in range(5)]
        # Any area of the same bucket gives the same logits, a different bucket different ones.
        for i, area in enumerate(AREAS.tolist()):
            same = {"small": 100.0, "medium": 50.0**2, "large": 150.0**2}[area_bucket(area)]
            assert torch.allclose(net(images[i : i + 1], torch.tensor([same])), alone[i], atol=1e-5)
        assert not torch.allclose(alone[0], net(images[:1], AREAS[1:2]), atol=1e-3)
    assert torch.allclose(batched, torch.cat(alone), atol=1e-5)


def test_fixed_scale_path_ignores_box_area():
    net = _net(not_adjust_scale=True, mask_scale_ratio_pre=2.0).eval()
    images = _images(2)
    with torch.no_grad():
        small, large = net(images, torch.tensor([10.0, 10.0])), net(images, torch.tensor([1e6, 1e6]))
    assert small.shape == (2, 1, 16, 16) and torch.equal(small, large)


def test_teacher_is_an_untrained_copy_kept_in_eval_mode():
    model = MAL(_net())
    assert _equal_state(model.student, model.teacher)  # heads too: the original re-initialised them
    assert not any(p.requires_grad for p in model.teacher.parameters())
    assert all(p.requires_grad for p in model.student.parameters())
    model.train()
    assert model.student.training and not model.teacher.training
    assert not any(m.training for m in model.teacher.modules())


def test_ema_update_moves_the_teacher_by_one_minus_momentum():
    model = MAL(_net())
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(1.0)
    model.ema_update(0.9)
    student = model.student.state_dict()
    for key, value in model.teacher.state_dict().items():
        assert torch.allclose(value, before[key] + 0.1 * (student[key] - before[key]), atol=1e-6), key


def test_freeze_stages_freezes_patch_embedding_and_chosen_blocks():
    net = _net(frozen_stages=[0, 2])
    backbone = net.backbone
    assert not any(p.requires_grad for p in backbone.patch_embed.parameters())
    assert not backbone.cls_token.requires_grad and not backbone.pos_embed.requires_grad
    assert not any(p.requires_grad for p in backbone.blocks[1].parameters())
    assert all(p.requires_grad for i in (0, 2, 3) for p in backbone.blocks[i].parameters())
    assert all(p.requires_grad for p in net.mask_head.parameters())
    assert all(p.requires_grad for p in _net(frozen_stages=[-1]).parameters())
    with pytest.raises(UserError, match="frozen_stages"):
        freeze_stages(backbone, [5])


def test_predict_options():
    model = MAL(_net()).eval()
    with torch.no_grad():
        for p in model.teacher.parameters():
            p.mul_(1.5)
    images, areas = _images(2), torch.tensor([40.0**2, 120.0**2])
    student, teacher = model.student(images, areas), model.teacher(images, areas)
    assert torch.allclose(model.predict(images, areas), student)
    assert torch.allclose(model.predict(images, areas, use_teacher=True), teacher)
    assert torch.allclose(model.predict(images, areas, use_mixed=True), (student + teacher) / 2, atol=1e-6)
    # Flip test is mirror-equivariant: mirroring the crop mirrors the mask.
    flipped = model.predict(images.flip(-1), areas, use_flip=True)
    assert torch.allclose(flipped, model.predict(images, areas, use_flip=True).flip(-1), atol=1e-5)
    assert not torch.allclose(model.predict(images, areas, use_flip=True), student, atol=1e-4)


def test_build_mal_follows_the_model_config():
    cfg = ModelConfig(
        arch="vit-micro/8", mask_head_num_convs=3, mask_head_hidden_channel=32, mask_head_out_channel=16
    )
    model = build_mal(cfg, CROP)
    assert model.student.output_size == 4 * CROP // 8
    assert len(model.student.mask_head.convs) == 3 and model.student.mask_head.convs[-1].out_channels == 16


def test_load_pretrained_mae_checkpoint(tmp_path):
    torch.manual_seed(1)
    mae = VisionTransformer(img_size=48, patch_size=16, embed_dim=128, depth=4, num_heads=4, num_classes=0)
    state = dict(mae.state_dict())
    state.update(
        {
            "decoder_embed.weight": torch.zeros(64, 128),
            "decoder_pred.bias": torch.zeros(768),
            "mask_token": torch.zeros(1, 1, 64),
            "fc_norm.weight": torch.ones(128),
        }
    )
    path = tmp_path / "mae.pth"
    torch.save({"model": state, "epoch": 799, "args": argparse.Namespace(input_size=224)}, path)

    model = MAL(_net())
    message = "\n".join(load_pretrained(model, str(path), "vit-micro/16"))
    backbone = model.student.backbone
    assert torch.equal(backbone.blocks[2].attn.qkv.weight, state["blocks.2.attn.qkv.weight"])
    expected_pos = resample_abs_pos_embed(state["pos_embed"], new_size=[4, 4], num_prefix_tokens=1)
    assert backbone.pos_embed.shape == (1, 17, 128) and torch.allclose(backbone.pos_embed, expected_pos)
    assert "skipped (not in this model): 1: fc_norm.weight" in message and "ignored 3 MAE decoder" in message
    assert "missed" not in message and "[MAE training checkpoint" in message
    assert _equal_state(model.student, model.teacher)


def test_load_pretrained_mal_checkpoint(tmp_path):
    source = MAL(_net())
    torch.manual_seed(7)
    for p in source.student.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "mal.pth"
    torch.save({"state_dict": {f"model.{k}": v for k, v in source.state_dict().items()}}, path)

    model = MAL(_net())
    message = "\n".join(load_pretrained(model, str(path), "vit-micro/16"))
    assert _equal_state(model.student, source.student)  # backbone and both heads
    assert _equal_state(model.teacher, model.student)
    assert "student" in message and "missed" not in message


def test_load_pretrained_rejects_unusable_files(tmp_path):
    unrelated = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, unrelated)
    with pytest.raises(UserError, match="no tensor fits"):
        load_pretrained(MAL(_net()), str(unrelated), "vit-micro/16")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="weights-only"):
        load_pretrained(MAL(_net()), str(garbage), "vit-micro/16")
    with pytest.raises(UserError, match="not found"):
        load_pretrained(MAL(_net()), str(tmp_path / "missing.pth"), "vit-micro/16")


def test_hub_weights_offline_is_a_user_error(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(mal.pretrained.timm, "create_model", offline)
    with pytest.raises(UserError, match="timm:vit_base_patch16_224.mae.*internet"):
        load_pretrained(MAL(_net()), "timm:vit_base_patch16_224.mae", "vit-micro/16")


def test_box_pooled_key_reads_the_box_and_the_crop_key_does_not():
    images = _images(1).repeat(2, 1, 1, 1)
    boxes = torch.zeros(2, 1, CROP, CROP)
    boxes[0, :, 8:40, 8:40] = 1
    boxes[1, :, 24:56, 24:56] = 1
    areas = torch.tensor([50.0**2, 50.0**2])
    with torch.no_grad():
        crop_key = _net().eval()(images, areas, boxes)
        box_key = _net(key_pooling="box").eval()(images, areas, boxes)
    assert torch.allclose(crop_key[0], crop_key[1])  # the original: the same crop gives the same mask
    assert not torch.allclose(box_key[0], box_key[1], atol=1e-4)
    with pytest.raises(ValueError, match="box mask"):
        _net(key_pooling="box")(images, areas)
