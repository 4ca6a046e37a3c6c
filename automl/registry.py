"""Tunable models: the protocol automl knows a model by, and finding one by name or import path.

A model is any object with the attributes of `TunableModel` below, as plain data and callables; it needs no
automl base class. A model package registers its object in the `automl.models` entry-point group (MAL does,
from its own package); `--model package.module:ATTR` names one kept anywhere else. automl copies the attributes into a
`TunableModel` once, and the rest of automl uses only that record, never a model's own modules. Training,
evaluation and the weights export are import paths ("module:attr") resolved where they run, so a study's
driver (and `automl --help`) imports no model code beyond its spec.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from automl.settings import SECTION
from plumbing.errors import UserError
from plumbing.fields import value_at
from plumbing.wording import did_you_mean

ENTRY_POINT_GROUP = "automl.models"
# What automl sets or reads in a spec, by role; a model maps each role to one of its dotted fields.
SPEC_ROLES = ("results_dir", "epochs", "validation_interval", "resume_from", "seed", "evaluate_checkpoint")


def no_multiples(spec: Any) -> dict[str, int]:
    """What a model that states no multiples has: every int value in a range is fine."""
    return {}


@dataclass(frozen=True)
class TunableModel:
    # who it is
    name: str  # what --model takes
    registered_name: str  # its name in the MLflow model registry, where the `champion` alias lives
    # its spec: a pydantic model with an `automl` section (automl.settings.AutoMLConfig, or a mapping of it)
    spec_type: type
    load_spec: Callable[[Path | None, list[str]], Any]  # a spec file (None: defaults) + overrides -> spec
    validate_spec: Callable[[dict[str, Any]], Any]  # a spec's plain data (model_dump) -> spec
    with_values: Callable[[Any, dict[str, Any]], Any]  # spec + dotted values -> spec, validated again
    check_inputs: Callable[[Any], None]  # pre-flight: a training's inputs are set, exist and are valid
    spec_fields: Mapping[str, str]  # role (SPEC_ROLES) -> the spec's dotted field
    train_dir: Callable[[Any], Path]  # where a spec's training writes its checkpoints
    eval_set: Callable[[Any], str]  # what identifies the evaluation set: champions compare on the same one
    # the dotted spec fields naming that set: a champion scored on another set is evaluated again with them
    eval_set_fields: tuple[str, ...]
    # what is searched and how it is judged
    search_space: Path  # the default search-space file
    metrics: Mapping[str, str]  # every validation metric -> "max" | "min"; the first is the default objective
    shape_fields: tuple[str, ...]  # prefixes a checkpoint cannot carry a change of (PBT never perturbs them)
    # its files and runs
    best_checkpoint: str  # file names in train_dir: the best validation so far, and the latest state
    latest_checkpoint: str
    fit: str  # fit(spec, callbacks=, enable_progress_bar=, strategy=, plugins=, devices=): a Lightning run
    # whose result has .best_metric and .train_dir; it validates (and calls the callbacks) every epoch
    evaluate: str  # evaluate(spec) -> (metrics, path of the metrics.json it wrote)
    export_weights: str  # export_weights(checkpoint, target): writes the weights-only file promotion keeps
    # its errors
    user_errors: tuple[type[BaseException], ...]  # one line and exit 2 at the CLI; a trial never retries them
    fatal_errors: tuple[type[BaseException], ...]  # failures a retry would only repeat (diverged, out of memory)
    ref: str = ""  # what `get_model` takes to find it again (a resumed study does)
    # optional: int fields whose values must be multiples of something under a given spec (a crop of whole
    # patches) -> that multiple; a search keeps their ranges on those multiples so no trial draws a refused value
    value_multiples: Callable[[Any], Mapping[str, int]] = no_multiples
    # optional: trivial answers a study is measured against, name -> "module:attr" of baseline(spec) -> its
    # metrics on the spec's validation set, as `evaluate` names them; study.json's `gain` carries each
    baselines: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def entry(self, which: str) -> Callable[..., Any]:
        """The function behind one of the import paths (fit, evaluate, export_weights)."""
        return _resolve(getattr(self, which))

    def baseline(self, name: str) -> Callable[[Any], Mapping[str, Any]]:
        """The function behind one of the baselines."""
        return _resolve(self.baselines[name])

    def code_modules(self) -> str:
        """The modules its entry points live in, comma-separated (what a warm process imports ahead)."""
        entries = (self.fit, self.evaluate, self.export_weights, *self.baselines.values())
        return ",".join(dict.fromkeys(entry.partition(":")[0] for entry in entries))

    @property
    def default_metric(self) -> str:
        return next(iter(self.metrics))

    def role(self, spec: Any, role: str) -> Any:
        """The value a spec holds for one of the SPEC_ROLES."""
        return value_at(spec, self.spec_fields[role])

    def spec_with(self, spec: Any, values: Mapping[str, Any], **roles: Any) -> Any:
        """`spec` with searched values and values by role (results_dir=..., epochs=...) set, validated again."""
        return self.with_values(spec, {**values, **{self.spec_fields[role]: value for role, value in roles.items()}})


OPTIONAL = ("value_multiples", "baselines")  # a model may leave these out; the record's default applies
FIELDS = tuple(f.name for f in dataclasses.fields(TunableModel) if f.name != "ref")
_loaded: dict[str, TunableModel] = {}


def registered() -> list[str]:
    """The names in the `automl.models` entry-point group (nothing is imported to list them)."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


def get_model(name: str | None = None) -> TunableModel:
    """A registered name, `package.module:ATTR` naming a model kept elsewhere, or (None) the only one registered."""
    if name is None:
        names = registered()
        if len(names) != 1:
            raise UserError(f"--model: choose one of the registered models ({', '.join(names) or 'none is installed'})")
        name = names[0]
    if name not in _loaded:
        _loaded[name] = of(_import(name) if ":" in name else _entry_point(name), name)
    return _loaded[name]


def model_for_spec(name: str | None, spec_path: Path | None, overrides: list[str]) -> tuple[TunableModel, Any]:
    """`--model`'s model and the spec it reads from the file; without `--model`, the registered model whose
    spec the file is (each model's strict spec accepts only its own files). A file no model accepts gets
    the problems of the model it comes closest to (the fewest), as `--model` with that model would."""
    if name is not None or len(registered()) <= 1:
        model = get_model(name)
        return model, model.load_spec(spec_path, overrides)
    accepted, refused = [], []
    for candidate in registered():
        model = get_model(candidate)
        try:
            with _quiet():  # the warnings of a spec that is not this model's would only confuse
                model.load_spec(spec_path, list(overrides))
        except (UserError, *model.user_errors) as exc:
            refused.append((len(getattr(exc, "details", ()) or ()) or 1, exc))
            continue
        accepted.append(model)
    if len(accepted) > 1:
        names = ", ".join(m.name for m in accepted)
        raise UserError(f"--model: the spec is valid for several registered models ({names}); choose one with --model")
    if not accepted:
        raise min(refused, key=lambda problems_and_error: problems_and_error[0])[1]
    model = accepted[0]
    return model, model.load_spec(spec_path, overrides)  # again, with its warnings


@contextmanager
def _quiet() -> Iterator[None]:
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


def user_error_types() -> tuple[type[BaseException], ...]:
    """What the CLI reports as one line: automl's own user errors and those of every model loaded so far."""
    return (UserError, *(error for model in _loaded.values() for error in model.user_errors))


def of(plugin: Any, ref: str) -> TunableModel:
    """The record of a model object, checked for every field of the protocol."""
    missing = [name for name in FIELDS if name not in OPTIONAL and not hasattr(plugin, name)]
    if missing:
        raise UserError(f"--model {ref}: {type(plugin).__name__} lacks {', '.join(missing)} (see automl.registry.TunableModel)")
    model = TunableModel(**{name: getattr(plugin, name) for name in FIELDS if hasattr(plugin, name)}, ref=ref)
    roles = [role for role in SPEC_ROLES if role not in model.spec_fields]
    if roles:
        raise UserError(f"--model {ref}: spec_fields lacks the roles {', '.join(roles)}")
    if SECTION not in getattr(model.spec_type, "model_fields", {}):
        raise UserError(f"--model {ref}: its spec_type has no `{SECTION}` section for the study settings")
    if not model.metrics:
        raise UserError(f"--model {ref}: metrics names no metric to optimise")
    return dataclasses.replace(
        model, search_space=Path(model.search_space), shape_fields=tuple(model.shape_fields),
        eval_set_fields=tuple(model.eval_set_fields), baselines=dict(model.baselines),
        user_errors=tuple(model.user_errors), fatal_errors=tuple(model.fatal_errors),
    )


def _resolve(path: str) -> Callable[..., Any]:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def _entry_point(name: str) -> Any:
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        names = registered()
        raise UserError(f"--model: unknown model {name!r}{did_you_mean(name, names)}; registered: {', '.join(names)}")
    return found[0].load()


def _import(path: str) -> Any:
    module, _, attr = path.partition(":")
    if not (module and attr and all(part.isidentifier() for part in [*module.split("."), attr])):
        raise UserError(f"--model {path!r}: expected a registered name or package.module:ATTR")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"--model: cannot import {path!r} ({exc})") from None
