"""Sections every TAO spec carries (devices, cuDNN switches, the W&B block) and sections another installed
package owns (the `automl` section, offered through an entry-point group), shared by the models' specs."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from plumbing.fields import StrictModel
from plumbing.safe_yaml import dump_yaml


def owned_section(group: str, name: str) -> Any:
    """The schema another installed package gives the section `name`, else a plain mapping."""
    offered = [ep for ep in entry_points(group=group) if ep.name == name]
    return offered[0].load() if offered else dict[str, Any]


def check_intervals(train: Any) -> None:
    """TAO's start-up assertions on a `train` section: an interval longer than the run would never validate or save."""
    n = train.num_epochs
    if train.validation_interval > n:
        raise ValueError(f"validation_interval: {train.validation_interval} must be at most num_epochs ({n})")
    if train.checkpoint_interval_unit == "epoch" and train.checkpoint_interval > n:
        raise ValueError(f"checkpoint_interval: {train.checkpoint_interval} epochs must be at most num_epochs ({n})")


class Devices(StrictModel):
    """`num_gpus`/`gpu_ids` as in TAO: when they disagree, the setting with more GPUs wins."""

    num_gpus: int = Field(1, ge=0, description="Number of GPUs (0 or no CUDA: CPU).")
    gpu_ids: list[int] = Field(default_factory=lambda: [0], description="GPU indices to use.")
    num_nodes: int = Field(1, ge=1, description="Number of nodes for multi-node DDP.")

    @model_validator(mode="after")
    def _reconcile_gpus(self) -> Devices:
        if any(i < 0 for i in self.gpu_ids):
            raise ValueError(f"gpu_ids: {self.gpu_ids} has a negative index; GPU indices are >= 0")
        if len(set(self.gpu_ids)) != len(self.gpu_ids):
            raise ValueError(f"gpu_ids: {self.gpu_ids} repeats an index; each GPU may appear once")
        if self.num_gpus > len(self.gpu_ids):
            object.__setattr__(self, "gpu_ids", list(range(self.num_gpus)))
        elif self.num_gpus and len(self.gpu_ids) > self.num_gpus:
            object.__setattr__(self, "num_gpus", len(self.gpu_ids))
        return self


class CudnnConfig(StrictModel):
    """TAO's `train.cudnn`: set as torch.backends.cudnn's switches before training."""

    benchmark: bool = Field(False, description="Let cuDNN pick the fastest kernels per input shape (not reproducible).")
    deterministic: bool = Field(True, description="Use deterministic cuDNN kernels only.")


class WandbConfig(StrictModel):
    """TAO's `wandb` section, kept so TAO specs load; runs are tracked in MLflow (`automl run`), not W&B."""

    enable: bool = Field(False, description="Unused: W&B logging is not built in; studies log to MLflow.")
    project: str = Field("TAO Toolkit", description="Unused (W&B project).")
    entity: str = Field("", description="Unused (W&B entity).")
    group: str = Field("", description="Unused (W&B group).")
    tags: list[str] = Field(default_factory=lambda: ["tao-toolkit"], description="Unused (W&B tags).")
    reinit: bool = Field(False, description="Unused.")
    sync_tensorboard: bool = Field(False, description="Unused.")
    save_code: bool = Field(False, description="Unused.")
    name: str = Field("TAO Toolkit Training", description="Unused (W&B run name).")
    run_id: str = Field("", description="Unused (W&B run id).")


class ExperimentSpecBase(StrictModel):
    """A TAO experiment spec's top level: `results_dir`, and per action a section with its own `results_dir`."""

    def output_dir(self, action: str) -> Path:
        """Where an action writes: its own results_dir, else <results_dir>/<action>."""
        own = getattr(self, action).results_dir
        return Path(own) if own else Path(self.results_dir) / action

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return dump_yaml(self.to_dict())
