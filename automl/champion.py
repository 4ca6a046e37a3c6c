"""The champion judged on this study's validation set. A champion registered from another validation set (or
judged by another metric) has no score to compare with here, so its registered files are fetched and it is
evaluated again on this study's set; the new best then competes with that score."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl.registry import TunableModel
from automl.tracking import WEIGHTS_FILE, current_champion, download_version
from plumbing.cli import one_line
from plumbing.errors import UserError
from plumbing.fields import value_at
from plumbing.safe_yaml import read_mapping

PREVIOUS_CHAMPION_DIR = "previous_champion"  # in the study folder: its files and its evaluation here
SPEC_FILE = "spec.yaml"  # written into best/ by promotion, so every registered version holds one


@dataclass(frozen=True)
class Rescored:
    version: str  # the champion's model version
    metrics: dict[str, Any] | None  # its evaluation on this study's validation set; None when that failed
    problem: str = ""  # why it failed, one line


def comparable(tags: dict[str, str], metric: str, eval_set: str) -> bool:
    """The champion's registered score is one this study's best can be compared with."""
    return tags.get("eval_set") == eval_set and tags.get("metric", metric) == metric


def rescore_champion(
    model: TunableModel, spec: Any, study_dir: Path, uri: str, metric: str, eval_set: str,
    evaluate: Callable[[Any], dict[str, Any]],
) -> Rescored | None:
    """The current champion evaluated with `evaluate` on the validation set of `spec`, when its registered
    score is not comparable; None when there is no champion or its score is."""
    current = current_champion(uri, model.registered_name)
    if current is None or comparable(current.tags, metric, eval_set):
        return None
    folder = study_dir / PREVIOUS_CHAMPION_DIR
    try:
        files = download_version(uri, current, folder / "registered")
        metrics = evaluate(on_this_set(model, spec, files, folder))
    except (UserError, *model.user_errors) as exc:  # its files, its spec or its weights no longer fit
        return Rescored(current.version, None, one_line(str(exc)))
    except Exception as exc:  # a download or a worker failing: the finished study is never lost for this
        return Rescored(current.version, None, f"{type(exc).__name__}: {one_line(str(exc))[:200]}")
    return Rescored(current.version, metrics)


def on_this_set(model: TunableModel, spec: Any, files: Path, folder: Path) -> Any:
    """The champion's own spec (its architecture and settings) with this study's validation set, evaluating
    its registered weights into `folder`."""
    if not (files / SPEC_FILE).is_file() or not (files / WEIGHTS_FILE).is_file():
        raise UserError(f"the registered champion holds no {SPEC_FILE} and {WEIGHTS_FILE}")
    own = model.validate_spec(read_mapping(files / SPEC_FILE, "the champion's spec"))
    here = {field: value_at(spec, field) for field in model.eval_set_fields}
    return model.spec_with(
        own, here, results_dir=str(folder.resolve()), evaluate_checkpoint=str((files / WEIGHTS_FILE).resolve()), resume_from=None,
    )
