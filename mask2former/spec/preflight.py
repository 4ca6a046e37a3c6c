"""Pre-flight checks: every input an action reads is set, exists and is valid, and every output can be
written, before any work starts."""

from __future__ import annotations

from pathlib import Path

from mask2former.spec.schema import ExperimentSpec
from plumbing.errors import UserError
from plumbing.files import is_remote


def required_paths(spec: ExperimentSpec, action: str) -> list[tuple[str, str | None]]:
    """The inputs an action cannot run without, as (key, value)."""
    d = spec.dataset
    val = [("dataset.val.instance_json", d.val.instance_json), ("dataset.val.img_dir", d.val.img_dir)]
    if action == "train":
        return [("dataset.train.instance_json", d.train.instance_json), ("dataset.train.img_dir", d.train.img_dir), *val]
    if action == "evaluate":
        return [*val, ("evaluate.checkpoint", spec.evaluate.checkpoint)]
    if action == "inference":
        return [("dataset.test.img_dir", d.test.img_dir), ("inference.checkpoint", spec.inference.checkpoint)]
    raise ValueError(action)


def _optional_paths(spec: ExperimentSpec, action: str) -> list[tuple[str, str | None]]:
    if action == "inference":
        return [("dataset.test.instance_json", spec.dataset.test.instance_json)]
    if action != "train":
        return []
    return [
        ("model.backbone.pretrained_weights", spec.model.backbone.pretrained_weights),
        ("train.pretrained_model_path", spec.train.pretrained_model_path),
        ("train.resume_training_checkpoint_path", spec.train.resume_training_checkpoint_path),
    ]


def check_paths(spec: ExperimentSpec, action: str) -> None:
    """Inputs set and present, outputs writable, COCO files and their images valid, checkpoints readable and
    fitting the spec's network."""
    from plumbing.storage import exists, is_registered_model

    for key, value in required_paths(spec, action):
        if not value:
            raise UserError(f"{key} is required for `mask2former {action}` (set it in the spec or as {key}=PATH)")
    paths = required_paths(spec, action) + _optional_paths(spec, action)
    for key, value in paths:
        if key.endswith(".checkpoint") and is_registered_model(str(value)):
            continue  # a registered model: resolved (and checked) when it is loaded
        if value and not exists(value):
            raise UserError(f"{key}: {value!r} does not exist")
    _check_outputs(spec, action, [value for _, value in paths])
    _check_data(spec, action)
    _check_checkpoints(spec, action)


def _check_outputs(spec: ExperimentSpec, action: str, inputs: list[str | None]) -> None:
    from mask2former.names import METRICS_FILE, PREDICTIONS_FILE
    from plumbing.outputs import check_file, check_folder

    folder_key = f"{action}.results_dir" if getattr(spec, action).results_dir else "results_dir"
    folder = spec.output_dir(action)
    if is_remote(str(getattr(spec, action).results_dir or spec.results_dir)):
        raise UserError(f"{folder_key}: `mask2former {action}` writes to a local or mounted folder (its inputs may be URIs)")
    check_folder(folder_key, folder)
    output = {"evaluate": METRICS_FILE, "inference": PREDICTIONS_FILE}.get(action)
    if output:
        check_file(folder_key, Path(folder) / output, inputs)


def _check_data(spec: ExperimentSpec, action: str) -> None:
    """Every COCO file is read and validated with its images (headers); training and validation need masks,
    and the spec's num_classes must hold the categories."""
    from mask2former.classes import classes_of
    from plumbing.coco import load_coco

    d = spec.dataset
    if action in ("train", "evaluate"):
        sets = [("dataset.val", d.val)] if action == "evaluate" else [("dataset.train", d.train), ("dataset.val", d.val)]
        categories = []
        for key, split in sets:
            coco = load_coco(split.instance_json, split.img_dir, check_images=True)
            if not any(a.get("segmentation") and not a.get("iscrowd") for a in coco.anns):
                raise UserError(
                    f"{key}.instance_json: {split.instance_json} has no instance masks (segmentation); Mask2Former "
                    "learns and is scored from masks (label boxes with `mal inference` first)"
                )
            classes_of(spec, coco.categories)
            categories.append(set(coco.categories))
        if len(categories) == 2 and categories[0] != categories[1] and not d.class_agnostic:
            extra = sorted(categories[0] ^ categories[1])[:5]
            raise UserError(
                f"dataset.train and dataset.val name different categories (ids {extra} are in one only); the "
                "validation scores each class the training learned: give both the same categories list"
            )
    elif d.test.instance_json:
        load_coco(d.test.instance_json, d.test.img_dir, check_images=True)


def _check_checkpoints(spec: ExperimentSpec, action: str) -> None:
    """Checkpoints are read weights-only with their tensors mapped, not loaded: cheap even for big files."""
    from mask2former import checkpoint as ckpt
    from plumbing.storage import is_local_file as local

    if action in ("evaluate", "inference"):
        path = getattr(spec, action).checkpoint
        if local(path):
            try:
                ckpt.check_fits(path, ckpt.model_shapes(spec))
            except UserError as exc:
                raise UserError(f"{action}.checkpoint {exc}") from None
        return
    t = spec.train
    for key, path in (("model.backbone.pretrained_weights", spec.model.backbone.pretrained_weights),
                      ("train.pretrained_model_path", t.pretrained_model_path)):  # fmt: skip
        if local(path):
            try:
                ckpt.load(path, mmap=True, foreign=True)
            except UserError as exc:
                raise UserError(f"{key}: {exc}") from None
    resume = t.resume_training_checkpoint_path or ckpt.latest(spec.output_dir("train"))
    if resume and local(str(resume)):
        try:
            ckpt.check_training_checkpoint(resume)
            ckpt.check_fits(resume, ckpt.model_shapes(spec))
        except UserError as exc:
            hint = "" if t.resume_training_checkpoint_path else "; training would resume from it: delete it to start over"
            raise UserError(f"{exc}{hint}") from None
