"""`inference.engine: ray`: `mal inference` fanned out over a Ray Data actor pool, one model per actor.

The driver holds only the annotation index: units of boxes (image paths and boxes, no pixels) stream to
the actors, which decode, crop and label them with the same `mal.runner.Labeler` a local run uses, and
stream back small annotation dicts (COCO RLE strings). Registered as the `ray` engine of the
`mal.inference_engines` entry-point group, so the rest of `mal` never imports Ray; Ray Data comes with
the `ray` extra (`pip install 'automl-mal[ray]'`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import ray
import torch

from mal.errors import UserError
from mal.runner.evaluate import load_module
from mal.runner.labeling import Labeler
from mal.spec import ExperimentSpec
from plumbing.ray_session import connect_ray

USER_ERROR = "user_error"  # key of the row an actor returns instead of annotations when the input is at fault


class LabelerActor:
    """One Ray actor: loads the checkpoint once, then labels the units it is given."""

    def __init__(self, spec: ExperimentSpec, threads: int, use_gpu: bool) -> None:
        torch.set_num_threads(threads)  # the actor's CPU share: actors on one node must not oversubscribe it
        self.labeler = Labeler(spec, torch.device("cuda" if use_gpu else "cpu"))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            annotations = [ann for text in batch["unit"] for ann in self.labeler.label(json.loads(text))]
        except UserError as exc:
            # Ray Data re-raises a UDF's exception as its own UserCodeException without the cause, so the
            # user's one-line error travels back as a row and is raised again in the driver.
            annotations = [{USER_ERROR: str(exc)}]
        return {"annotation": np.array([json.dumps(ann) for ann in annotations], dtype=object)}


def actor_resources(spec: ExperimentSpec, cluster: dict[str, float]) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor): one actor per GPU when labeling on GPUs, else one per CPU,
    unless inference.num_workers says otherwise; the cluster's CPUs (and GPUs) are shared out evenly."""
    cpus, gpus = cluster.get("CPU", 1.0), cluster.get("GPU", 0.0) if spec.inference.num_gpus > 0 else 0.0
    actors = spec.inference.num_workers or max(1, int(gpus or cpus))
    return actors, cpus / actors, min(1.0, gpus / actors)


def label_with_ray(spec: ExperimentSpec, units: list[list[dict]]) -> tuple[Iterable[dict[str, Any]], str]:
    """The `ray` inference engine (see mal.runner.infer): Ray Data `map_batches` over an actor pool."""
    load_module(spec, spec.inference.checkpoint)  # a checkpoint that does not fit fails here in one line, not in every actor
    started = connect_ray()
    actors, cpus, gpus = actor_resources(spec, ray.cluster_resources())
    labels = ray.data.from_items([{"unit": json.dumps(unit)} for unit in units]).map_batches(
        LabelerActor,
        batch_size=1,  # one unit is one network batch: the same batches as a local run
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs={"spec": spec, "threads": max(1, math.floor(cpus)), "use_gpu": gpus > 0},
        num_cpus=cpus,
        num_gpus=gpus or None,
    )

    def annotations() -> Iterator[dict[str, Any]]:
        try:
            for row in labels.iter_rows():
                annotation = json.loads(row["annotation"])
                if USER_ERROR in annotation:
                    raise UserError(annotation[USER_ERROR])
                yield annotation
        finally:
            if started:
                ray.shutdown()

    return annotations(), f"{actors} Ray actor{'s' if actors > 1 else ''}"
