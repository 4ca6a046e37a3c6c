"""Mask2Former as automl tunes it: the registry protocol (automl/registry.py) as plain data and callables.

mask2former never imports automl (nor mal): automl finds this object through the `automl.models` entry point.
Nothing here imports torch; training, evaluation and the weights export are import paths that only trial
processes resolve.
"""

from pathlib import Path
from types import SimpleNamespace

from mask2former import spec
from mask2former.names import BEST_FILE, LATEST_FILE, REGISTERED_MODEL
from mask2former.objective import METRICS, objective
from plumbing.errors import TrainingFailure, UserError
from plumbing.files import file_hash
from plumbing.storage import local_file


def check_inputs(experiment: spec.ExperimentSpec) -> None:
    """The training's inputs, and a study metric this model reports."""
    spec.check_paths(experiment, "train")
    objective(experiment)


def value_multiples(experiment: spec.ExperimentSpec) -> dict[str, int]:
    """The decoder and pixel-decoder widths split over the attention heads."""
    heads = experiment.model.mask_former.nheads
    return {"model.mask_former.hidden_dim": heads, "model.sem_seg_head.convs_dim": heads}


def train_dir(experiment: spec.ExperimentSpec) -> Path:
    return experiment.output_dir("train")


def eval_set(experiment: spec.ExperimentSpec) -> str:
    """The validation json's fingerprint: champions are compared only on the same evaluation set."""
    return file_hash(local_file(experiment.dataset.val.instance_json))


MODEL = SimpleNamespace(
    name="mask2former",
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
    eval_set_fields=("dataset.val.instance_json", "dataset.val.img_dir"),
    search_space=Path(__file__).parent / "search_space.yaml",
    metrics=METRICS,
    best_checkpoint=BEST_FILE,
    latest_checkpoint=LATEST_FILE,
    fit="mask2former.runner.train:fit",
    evaluate="mask2former.runner.evaluate:evaluate",
    export_weights="mask2former.checkpoint:export_weights",
    value_multiples=value_multiples,
    shape_fields=("model.", "dataset.class_agnostic", "dataset.contiguous_id"),  # the network and its class head
    user_errors=(UserError,),
    fatal_errors=(TrainingFailure,),
)
