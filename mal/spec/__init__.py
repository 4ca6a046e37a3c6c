"""The experiment spec: its schema (TAO's sections and defaults), loading with overrides, pre-flight checks,
and the template and JSON Schema printed from it."""

from mal.spec.load import load_spec, validate_dict, with_values
from mal.spec.preflight import check_paths, required_paths
from mal.spec.schema import (
    ACTIONS,
    SECTION_GROUP,
    Action,
    DatasetConfig,
    EvaluateConfig,
    ExperimentSpec,
    InferenceConfig,
    ModelConfig,
    TrainConfig,
)
from mal.spec.templates import json_schema, template

__all__ = [
    "ACTIONS",
    "SECTION_GROUP",
    "Action",
    "DatasetConfig",
    "EvaluateConfig",
    "ExperimentSpec",
    "InferenceConfig",
    "ModelConfig",
    "TrainConfig",
    "check_paths",
    "json_schema",
    "load_spec",
    "required_paths",
    "template",
    "validate_dict",
    "with_values",
]
