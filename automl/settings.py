"""The `automl` section of a model's spec: what one study runs with (algorithm, budget, resources, tracking).

A model's spec carries it under `automl`. A model may take this schema into its own spec through an entry
point of its own and validate it with the rest (MAL does); one that keeps the section as a plain mapping
gets it validated here (`study_config`). The metric and its direction default to the model's own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    ValidationError,
    model_validator,
)

from plumbing.errors import UserError
from plumbing.fields import StrictModel
from plumbing.wording import describe, suggest_field

ALGORITHMS = ("asha", "bayesian", "hyperband", "bohb", "dehb", "random", "grid", "pbt")
SECTION = "automl"  # the section of every tunable model's spec that holds these settings


class AutoMLConfig(StrictModel):
    policy: Literal["auto", "on", "off"] = Field("auto", description="auto|on: run a study; off: train once.")
    algorithm: Literal[ALGORITHMS] = Field("asha", description="Search algorithm.")  # type: ignore[valid-type]
    max_trials: int = Field(20, ge=1, description="Trials to run.")
    max_epochs: int | None = Field(None, ge=1, description="Epoch budget of one trial; default the spec's own epochs.")
    grace_period: int = Field(1, ge=1, description="Epochs before a trial may be stopped early.")
    reduction_factor: int = Field(3, ge=2, description="Successive-halving reduction factor.")
    max_concurrent: int | None = Field(None, ge=1, description="Trials at once; default: as resources allow.")
    cpus_per_trial: float = Field(1.0, gt=0, description="CPUs per trial (torch threads follow).")
    gpus_per_trial: float | None = Field(None, ge=0, description="GPUs per trial (fractions allowed); default 1 when CUDA is present, else 0.")
    workers_per_trial: int | None = Field(
        None, ge=1, description="DDP workers per trial (Ray Train); default gpus_per_trial when above 1, else 1."
    )
    max_failures: int = Field(1, ge=0, description="Retries of a trial whose worker died.")
    search_space: str | None = Field(None, description="Search-space file; default the model's own.")
    hyperparameters: list[str] | None = Field(None, description="Parameters to search; default the file's default list.")
    range_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-parameter narrowed ranges, e.g. {train.lr: {low: 1e-5, high: 1e-4}}."
    )
    warm_start: bool = Field(
        True, description="First trials: the spec's own values, then the space file's popular ones, fitted to the ranges."
    )
    warm_start_from: str | None = Field(
        None, description="An earlier study's folder: its trials are told to this study's searcher, its best runs first."
    )
    metric: str | None = Field(None, description="Metric to optimise; default the model's first metric.")
    mode: Literal["max", "min"] | None = Field(None, description="Direction of the metric; default the model's own for it.")
    seed: int | None = Field(None, ge=0, description="Sampler seed; default the spec's training seed.")
    tracking_uri: str | None = Field(None, description="MLflow URI; default $MLFLOW_TRACKING_URI or sqlite:///mlflow.db.")
    experiment_name: str | None = Field(None, description="MLflow experiment; default automl-<model>.")
    log_all_checkpoints: bool = Field(
        False, description="Log every trial's best checkpoint to its MLflow run (default: only the promoted model)."
    )

    @model_validator(mode="after")
    def _grace(self) -> AutoMLConfig:
        if self.max_epochs is not None and self.grace_period > self.max_epochs:
            raise ValueError(f"grace_period: {self.grace_period} must be <= max_epochs ({self.max_epochs})")
        if self.gpus_per_trial is not None and self.gpus_per_trial > 1 and not float(self.gpus_per_trial).is_integer():
            raise ValueError(f"gpus_per_trial: {self.gpus_per_trial} above 1 must be whole (one GPU per DDP worker)")
        if self.algorithm == "pbt" and self.trial_workers() > 1:
            raise ValueError("algorithm pbt: exploits restore single-process trials; set workers_per_trial to 1")
        return self

    def trial_workers(self) -> int:
        if self.workers_per_trial is not None:
            return self.workers_per_trial
        return int(self.gpus_per_trial) if self.gpus_per_trial and self.gpus_per_trial > 1 else 1


def study_config(spec: Any) -> AutoMLConfig:
    """The spec's `automl` section as settings: MAL's is one already; a plain mapping is validated here."""
    try:
        return AutoMLConfig.model_validate(getattr(spec, SECTION))
    except ValidationError as exc:
        error = exc.errors()[0]
        problem = describe(
            {**error, "loc": (SECTION, *error["loc"])},
            lambda where: suggest_field(where.removeprefix(f"{SECTION}."), AutoMLConfig, prefix=f"{SECTION}."),
        )
        raise UserError(f"invalid spec: {problem}") from None
