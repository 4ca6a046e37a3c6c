"""Tunable models: name -> how to load its spec, train it, evaluate it, and where its search space is.

The orchestrator knows models only through this table; entry points are import paths so that listing
the registry (and `automl --help`) imports no model code.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mal.errors import UserError

SPACES_DIR = Path(__file__).parent / "search_spaces"


@dataclass(frozen=True)
class TunableModel:
    name: str
    spec_module: str  # load_spec(path, overrides), check_paths(spec, action), with_values(spec, values)
    fit: str  # fit(spec, callbacks=..., enable_progress_bar=..., logger=...) -> result with .best_checkpoint
    evaluate: str  # evaluate(spec) -> (metrics, path)
    search_space: Path
    weights: str  # weights(checkpoint_path) -> weights-only state dict for promotion
    reference: str | None = None  # the `package.module:ATTR` it was imported by, when not registered here

    def code_modules(self) -> str:
        """The modules its entry points live in, comma-separated (what a warm process imports ahead)."""
        entries = (self.fit, self.evaluate, self.weights)
        return ",".join(dict.fromkeys(entry.partition(":")[0] for entry in entries))

    @property
    def ref(self) -> str:
        """What `get_model` takes to find this model again (a resumed study does)."""
        return self.reference or self.name

    def entry(self, which: str) -> Callable[..., Any]:
        module, _, attr = getattr(self, which).partition(":")
        return getattr(importlib.import_module(module), attr)

    @property
    def spec(self) -> Any:
        return importlib.import_module(self.spec_module)


REGISTRY: dict[str, TunableModel] = {
    "mal": TunableModel(
        name="mal",
        spec_module="mal.spec",
        fit="mal.runner:fit",
        evaluate="mal.runner:evaluate",
        search_space=SPACES_DIR / "mal.yaml",
        weights="mal.runner:export_weights",
    ),
}


def get_model(name: str) -> TunableModel:
    """A registered name, or `package.module:ATTR` naming a TunableModel (a model kept outside this package)."""
    if ":" in name:
        return _import_model(name)
    if name not in REGISTRY:
        close = difflib.get_close_matches(name, list(REGISTRY), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise UserError(f"--model: unknown model {name!r}{hint}; registered: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def _import_model(path: str) -> TunableModel:
    module, _, attr = path.partition(":")
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"--model: cannot import {path!r} ({exc})") from None
    if not isinstance(found, TunableModel):
        raise UserError(f"--model: {path!r} is a {type(found).__name__}, not an automl.registry.TunableModel")
    return dataclasses.replace(found, reference=path)
