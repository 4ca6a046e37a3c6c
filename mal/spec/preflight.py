"""Pre-flight checks: every input an action reads is set, exists and is valid before any work starts."""

from __future__ import annotations

from mal.spec.outputs import check_outputs
from mal.spec.schema import ExperimentSpec
from plumbing.errors import UserError


def required_paths(spec: ExperimentSpec, action: str) -> list[tuple[str, str | None]]:
    """The inputs an action cannot run without, as (key, value)."""
    d = spec.dataset
    if action == "train":
        return [
            ("dataset.train_ann_path", d.train_ann_path),
            ("dataset.train_img_dir", d.train_img_dir),
            ("dataset.val_ann_path", d.val_ann_path),
            ("dataset.val_img_dir", d.val_img_dir),
        ]
    if action == "evaluate":
        return [
            ("dataset.val_ann_path", d.val_ann_path),
            ("dataset.val_img_dir", d.val_img_dir),
            ("evaluate.checkpoint", spec.evaluate.checkpoint),
        ]
    if action == "inference":
        return [
            ("inference.ann_path", spec.inference.ann_path),
            ("inference.img_dir", spec.inference.img_dir),
            ("inference.checkpoint", spec.inference.checkpoint),
        ]
    raise ValueError(action)


def _optional_paths(spec: ExperimentSpec, action: str) -> list[tuple[str, str | None]]:
    if action != "train":
        return []
    pretrained = spec.train.pretrained_model_path
    if pretrained and pretrained.startswith("timm:"):
        pretrained = None
    return [
        ("train.pretrained_model_path", pretrained),
        ("train.resume_training_checkpoint_path", spec.train.resume_training_checkpoint_path),
    ]


def check_paths(spec: ExperimentSpec, action: str) -> None:
    """Every input the action reads must be set, exist and be valid before any work starts: COCO files and
    their images, checkpoints (read weights-only), and for training at least one usable box."""
    from plumbing.storage import exists, is_registered_model

    for key, value in required_paths(spec, action):
        if not value:
            raise UserError(f"{key} is required for `{action}` (set it in the spec or as {key}=PATH)")
    for key, value in required_paths(spec, action) + _optional_paths(spec, action):
        if key.endswith(".checkpoint") and is_registered_model(str(value)):
            continue  # a registered model: resolved (and checked) when it is loaded
        if value and not exists(value):
            raise UserError(f"{key}: {value!r} does not exist")
    check_outputs(spec, action, [value for _, value in required_paths(spec, action) + _optional_paths(spec, action)])
    _check_data(spec, action)
    _check_checkpoints(spec, action)


def _check_data(spec: ExperimentSpec, action: str) -> None:
    """Every COCO file of the action is read and validated with its images (headers only)."""
    from plumbing.coco import load_coco

    d = spec.dataset
    val = ("dataset.val_ann_path", d.val_ann_path, d.val_img_dir)
    sets = {
        "train": [("dataset.train_ann_path", d.train_ann_path, d.train_img_dir), val],
        "evaluate": [val],
        "inference": [("inference.ann_path", spec.inference.ann_path, spec.inference.img_dir)],
    }[action]
    for key, ann_path, img_dir in sets:
        coco = load_coco(ann_path, img_dir, check_images=True)
        if key == "dataset.val_ann_path" and not coco.anns:
            raise UserError(f"{key}: {ann_path} has no annotations to validate on")
        if key == "dataset.train_ann_path":
            from mal.instances import usable_train_instances  # mal.data would import torch

            usable_train_instances(coco, d.min_obj_size, d.max_obj_size)


def _check_checkpoints(spec: ExperimentSpec, action: str) -> None:
    """Checkpoints are read weights-only with their tensors mapped, not loaded: cheap even for big files.
    torch is imported only when there is a file to read: a study's driver checks a fresh training's inputs."""
    from mal.names import latest as latest_checkpoint
    from plumbing.storage import is_local_file as local

    if action in ("evaluate", "inference"):
        path = getattr(spec, action).checkpoint
        if local(path):
            from mal import checkpoint as ckpt

            checkpoint = ckpt.load(path, mmap=True, foreign=True)
            try:
                ckpt.network_state(checkpoint)
            except UserError as exc:
                raise UserError(f"{action}.checkpoint {path}: {exc}") from None
        return
    t = spec.train
    pretrained = local(t.pretrained_model_path) and not t.pretrained_model_path.startswith("timm:")
    latest = latest_checkpoint(spec.output_dir("train"))
    resume = local(t.resume_training_checkpoint_path)
    if not (pretrained or resume or latest):
        return
    from mal import checkpoint as ckpt

    if pretrained:
        ckpt.load(t.pretrained_model_path, mmap=True, foreign=True)
    if resume:
        ckpt.check_training_checkpoint(t.resume_training_checkpoint_path)
        ckpt.check_fits(t.resume_training_checkpoint_path, _model_tensors(spec))
        return
    if latest is not None:
        try:
            ckpt.check_training_checkpoint(latest)
            ckpt.check_fits(latest, _model_tensors(spec))
        except UserError as exc:
            raise UserError(f"{exc}; training would resume from it: delete it to start over") from None


def _model_tensors(spec: ExperimentSpec) -> dict:
    """The shapes the spec's model has (built on the meta device: no memory, no init)."""
    import torch

    from mal.model import build_mal

    with torch.device("meta"):
        return build_mal(spec.model, spec.dataset.crop_size).state_dict()
