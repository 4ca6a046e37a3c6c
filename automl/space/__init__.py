"""Search spaces: a file of searchable parameters (our YAML or a TAO train.schema.json) -> the space one
study searches, checked against the model's spec -> Optuna distributions, random draws and grids."""

from automl.space.files import load_space_file
from automl.space.resolve import resolve_space
from automl.space.sampling import MAX_GRID_VALUES, SearchSpace
from automl.space.schema import Condition, ParamSpec, SearchSpaceFile
from automl.space.study_space import study_space
from automl.space.tao import from_tao_schema

__all__ = [
    "MAX_GRID_VALUES",
    "Condition",
    "ParamSpec",
    "SearchSpace",
    "SearchSpaceFile",
    "from_tao_schema",
    "load_space_file",
    "resolve_space",
    "study_space",
]
