"""Mask2Former's experiment spec: its schema (TAO's sections and names), loading with overrides, pre-flight
checks, and the template and JSON Schema printed from it."""

from mask2former.spec.load import load_spec, validate_dict, with_values
from mask2former.spec.preflight import check_paths, required_paths
from mask2former.spec.schema import ACTIONS, SECTION_GROUP, ExperimentSpec
from mask2former.spec.templates import json_schema, template

__all__ = [
    "ACTIONS",
    "SECTION_GROUP",
    "ExperimentSpec",
    "check_paths",
    "json_schema",
    "load_spec",
    "required_paths",
    "template",
    "validate_dict",
    "with_values",
]
