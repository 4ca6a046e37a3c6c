"""The space a study searches: its settings' file, parameters and narrowed ranges, resolved against the
spec as the trials get it. Kept light (no Ray, no MLflow) so that `automl space -e SPEC` answers at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automl.driver import epoch_budget
from automl.registry import TunableModel
from automl.settings import AutoMLConfig
from automl.space.files import load_space_file
from automl.space.resolve import resolve_space
from automl.space.sampling import SearchSpace
from automl.space.schema import SearchSpaceFile
from plumbing.errors import UserError


def study_space(model: TunableModel, spec: Any, config: AutoMLConfig, space_file: SearchSpaceFile | None = None) -> SearchSpace:
    """The space the settings ask for: their file (default the model's own), parameters and narrowed ranges,
    checked against the spec as the trials get it (trained for the study's epoch budget), so that a range
    the budget cannot take (a warmup longer than automl.max_epochs) is refused before any trial runs."""
    if space_file is None:
        space_file = load_space_file(Path(config.search_space) if config.search_space else model.search_space)
    epochs = epoch_budget(model, spec, config)
    budget = f"every trial trains automl.max_epochs={epochs} epochs"
    changed = epochs != model.role(spec, "epochs")  # then a refusal may be the budget's: say so
    try:
        trials_see = model.spec_with(spec, {}, epochs=epochs, validation_interval=1)
    except model.user_errors as exc:
        inner = str(exc).removeprefix("invalid spec: ")
        raise UserError(f"{budget}, for which the spec is invalid: {inner}; change it or automl.max_epochs") from None
    try:
        return resolve_space(model, space_file, trials_see, config.hyperparameters, config.range_overrides)
    except UserError as exc:
        if not changed:
            raise
        resolve_space(model, space_file, spec, config.hyperparameters, config.range_overrides)  # not the budget's fault?
        raise UserError(f"{exc} ({budget}; narrow the range with automl.range_overrides or raise automl.max_epochs)") from None
