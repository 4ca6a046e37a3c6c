"""Reading study.json and leaderboard.csv back: a file that is empty, cut short or edited by hand ends in
one line naming the file and the field, never in a KeyError deep inside `status`, `resume` or `report`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from plumbing.errors import UserError
from plumbing.safe_json import parse_json
from plumbing.wording import describe

Number = int | float


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class StudySettingsRecord(_Open):
    """The settings `automl.driver.study_settings` writes, as far as the commands read them back."""

    model: str
    model_ref: str | None = None
    algorithm: str
    metric: str
    mode: Literal["max", "min"]
    max_trials: int
    max_epochs: int
    grace_period: int
    max_concurrent: int
    max_failures: int
    workers_per_trial: int
    cpus_per_trial: Number
    gpus_per_trial: Number
    seed: int | None = None


class HistoryEntry(_Open):
    """One validation: its epoch and every metric the model declares (numbers, or null for an empty bucket)."""

    epoch: int
    __pydantic_extra__: dict[str, Number | None]


class TrialRecordFile(_Open):
    """Every field of `automl.state.TrialRecord`; the writer always writes all of them."""

    trial_id: str
    params: dict[str, Any]
    status: Literal["PENDING", "RUNNING", "COMPLETED", "STOPPED", "FAILED"]
    best_metric: Number | None
    epochs: int
    history: list[HistoryEntry]
    started: Number | None
    seconds: Number
    error: str


class BestRecord(_Open):
    trial_id: str
    params: dict[str, Any] = {}


class SearchSpaceRecord(_Open):
    """What `SearchSpace.to_dict` writes; each parameter's body is checked by `ParamSpec` when read back."""

    model: str
    parameters: dict[str, dict[str, Any]]
    base: dict[str, Any]
    warm_start: dict[str, Any]
    spec_values: dict[str, Any] = {}  # written since warm starts; older studies lack it


class StudyDocument(_Open):
    status: str
    settings: StudySettingsRecord
    search_space: SearchSpaceRecord
    started: Number | None
    elapsed_seconds: Number
    best_so_far: BestRecord | None
    best: BestRecord | None
    mlflow_run_id: str | None
    records: list[TrialRecordFile]
    notes: list[str] = []  # written only when something happened to the study beyond its trials

def check_study_document(doc: Any, path: Path) -> dict[str, Any]:
    """`doc` (study.json as parsed) when it has every field the commands read, with the types they need."""
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not a study file (it holds a {type(doc).__name__}, not an object)")
    from automl.space import SearchSpace

    for where, check in (("", StudyDocument.model_validate), ("search_space.parameters: ", lambda d: SearchSpace.from_dict(d["search_space"]))):
        try:
            check(doc)
        except ValidationError as exc:
            raise UserError(f"{path}: {where}{describe(exc.errors()[0])} (edited by hand, or cut short?)") from None
    return doc


def read_study_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a study file (it is not UTF-8 text)") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not text.strip():
        raise UserError(f"{path} is empty (a copy cut short?); the study cannot be read")
    return check_study_document(parse_json(text, str(path)), path)


def read_leaderboard(path: Path) -> list[dict[str, str]]:
    """leaderboard.csv's rows, every cell a string; rows shorter or longer than the header are padded or cut."""
    if not path.is_file():
        return []
    try:
        with path.open(encoding="utf-8", newline="") as file:
            reader = csv.DictReader(file)
            header = [name for name in reader.fieldnames or [] if name]
            return [{name: row.get(name) or "" for name in header} for row in reader]
    except (csv.Error, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV file ({exc})") from None
