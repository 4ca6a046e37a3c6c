"""MAL as automl tunes it: the registry protocol (see automl/registry.py) as plain data and callables.

mal never imports automl: automl finds this object through the `automl.models` entry point and reads its
attributes. Nothing here imports torch, because a study's driver loads it; training, evaluation and the
weights export are import paths that only trial processes resolve.
"""

from pathlib import Path
from types import SimpleNamespace

from mal import spec
from mal.archs import ARCHS
from mal.errors import TrainingFailure, UserError
from mal.names import BEST_FILE, LATEST_FILE, REGISTERED_MODEL
from mal.objective import METRICS, judged_by
from plumbing.files import file_hash
from plumbing.storage import local_file


def check_inputs(experiment: spec.ExperimentSpec) -> None:
    """The training's inputs, and a study metric the validation set can measure (mIoU, a study's default,
    needs masks)."""
    from plumbing.coco import load_coco

    spec.check_paths(experiment, "train")
    d = experiment.dataset
    judged_by(experiment, load_coco(d.val_ann_path, d.val_img_dir), default=next(iter(METRICS)))


def value_multiples(experiment: spec.ExperimentSpec) -> dict[str, int]:
    """The crop must split into whole patches (ViTs) or whole cells at the deepest stride (CNNs)."""
    return {"dataset.crop_size": ARCHS[experiment.model.arch].size_multiple}


def train_dir(experiment: spec.ExperimentSpec) -> Path:
    return experiment.output_dir("train")


def eval_set(experiment: spec.ExperimentSpec) -> str:
    """The validation json's fingerprint: champions are compared only on the same evaluation set."""
    return file_hash(local_file(experiment.dataset.val_ann_path))


MODEL = SimpleNamespace(
    name="mal",
    registered_name=REGISTERED_MODEL,
    spec_type=spec.ExperimentSpec,
    load_spec=spec.load_spec,
    validate_spec=spec.validate_dict,
    with_values=spec.with_values,
    check_inputs=check_inputs,
    spec_fields={
        "results_dir": "results_dir",
        "epochs": "train.num_epochs",
        "validation_interval": "train.validation_interval",
        "resume_from": "train.resume_training_checkpoint_path",
        "seed": "train.seed",
        "evaluate_checkpoint": "evaluate.checkpoint",
    },
    train_dir=train_dir,
    eval_set=eval_set,
    eval_set_fields=("dataset.val_ann_path", "dataset.val_img_dir"),
    search_space=Path(__file__).parent / "search_space.yaml",
    metrics=METRICS,
    best_checkpoint=BEST_FILE,
    latest_checkpoint=LATEST_FILE,
    fit="mal.runner.train:fit",
    evaluate="mal.runner.evaluate:evaluate",
    export_weights="mal.checkpoint:export_weights",
    baselines={"box_fill": "mal.runner.evaluate:box_fill"},  # the filled box as the mask: what training must beat
    value_multiples=value_multiples,
    shape_fields=("model.", "dataset."),  # the network and its input size: a checkpoint cannot carry them over
    user_errors=(UserError,),
    fatal_errors=(TrainingFailure,),
)
