"""A test-only tunable model that is not MAL: its own spec, search space, checkpoint names, metric (a
distance, minimised), registered name and user error. A study of it shows that automl needs nothing of a
model but the registry protocol: `automl run --model toy_model:TOY` with this folder on PYTHONPATH (Ray
workers inherit it).

The model is one weight that gradient descent moves toward `target`, one step per epoch; the searched
`step_size` sets how far, so the best trial is known in advance: the largest step size.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

HERE = Path(__file__).parent
BEST, LATEST, SUFFIX = "toy-best", "toy-last", ".ckpt"


class ToyError(Exception):
    """The toy's own user error: automl knows it only because the protocol lists it."""


class ToySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: str = "toy-results"
    budget: int = Field(3, ge=1)
    check_every: int = Field(1, ge=1)
    warm_from: str | None = None
    seed: int = 0
    weights: str | None = None
    step_size: float = Field(0.1, gt=0, lt=0.5)
    target: float = 3.0
    automl: dict[str, Any] = Field(default_factory=dict)  # a plain mapping: automl validates it


def validate_spec(data: dict[str, Any]) -> ToySpec:
    try:
        return ToySpec.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise ToyError(f"toy spec: {'.'.join(map(str, error['loc']))}: {error['msg']}") from None


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[leaf] = value


def load_spec(path: Path | None, overrides: list[str]) -> ToySpec:
    data = (yaml.safe_load(Path(path).read_text()) or {}) if path else {}
    for text in overrides:
        key, _, value = text.partition("=")
        _set(data, key, yaml.safe_load(value))
    return validate_spec(data)


def with_values(spec: ToySpec, values: dict[str, Any]) -> ToySpec:
    data = spec.model_dump(mode="json")
    for dotted, value in values.items():
        _set(data, dotted, value)
    return validate_spec(data)


def check_inputs(spec: ToySpec) -> None:
    if spec.warm_from and not Path(spec.warm_from).is_file():
        raise ToyError(f"warm_from: {spec.warm_from!r} does not exist")


def train_dir(spec: ToySpec) -> Path:
    return Path(spec.out) / "fit"


def eval_set(spec: ToySpec) -> str:
    return f"target={spec.target}"


def _regressor(spec: ToySpec):
    import lightning as L
    import torch

    class Regressor(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def distance(self) -> torch.Tensor:
            return (self.w - spec.target) ** 2

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return self.distance()

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            self.log("distance", self.distance())

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=spec.step_size)

    return Regressor()


def fit(spec: ToySpec, callbacks: Any = (), enable_progress_bar: bool = True) -> SimpleNamespace:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint

    folder = train_dir(spec)
    best = ModelCheckpoint(dirpath=folder, filename=BEST, monitor="distance", mode="min", save_on_train_epoch_end=False,
                           enable_version_counter=False)
    latest = ModelCheckpoint(dirpath=folder, save_top_k=0, save_last=True, enable_version_counter=False)
    best.FILE_EXTENSION = latest.FILE_EXTENSION = SUFFIX
    latest.CHECKPOINT_NAME_LAST = LATEST
    one = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1, 1)))
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=spec.budget, check_val_every_n_epoch=spec.check_every,
        callbacks=[best, latest, *callbacks], logger=False, enable_progress_bar=enable_progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0,
    )
    resume = folder / f"{LATEST}{SUFFIX}"
    trainer.fit(_regressor(spec), one, one, ckpt_path=str(resume) if resume.is_file() else spec.warm_from)
    return SimpleNamespace(best_metric=float(best.best_model_score), train_dir=folder)


def export_weights(checkpoint: Path, target: Path) -> None:
    import torch

    torch.save(torch.load(checkpoint, weights_only=True)["state_dict"], target)


def evaluate(spec: ToySpec) -> tuple[dict[str, float], Path]:
    import torch

    w = float(torch.load(spec.weights, weights_only=True)["w"])
    metrics = {"distance": (w - spec.target) ** 2}
    path = Path(spec.out) / "score.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))
    return metrics, path


def untrained(spec: ToySpec) -> dict[str, float]:
    """The toy's baseline: its weight as it starts (zero), never moved."""
    return {"distance": spec.target**2}


TOY = SimpleNamespace(
    name="toy",
    registered_name="toy-regressor",
    spec_type=ToySpec,
    load_spec=load_spec,
    validate_spec=validate_spec,
    with_values=with_values,
    check_inputs=check_inputs,
    spec_fields={
        "results_dir": "out", "epochs": "budget", "validation_interval": "check_every",
        "resume_from": "warm_from", "seed": "seed", "evaluate_checkpoint": "weights",
    },
    train_dir=train_dir,
    eval_set=eval_set,
    eval_set_fields=("target",),
    search_space=HERE / "data" / "toy_space.yaml",
    metrics={"distance": "min"},
    shape_fields=("target",),
    best_checkpoint=f"{BEST}{SUFFIX}",
    latest_checkpoint=f"{LATEST}{SUFFIX}",
    fit="toy_model:fit",
    evaluate="toy_model:evaluate",
    export_weights="toy_model:export_weights",
    baselines={"untrained": "toy_model:untrained"},
    user_errors=(ToyError,),
    fatal_errors=(FloatingPointError,),
)
