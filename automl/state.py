"""What a study knows about its trials, and the study folder it keeps: study.json (settings, search space,
status, every trial's record) and leaderboard.csv (one row per trial), rewritten after every event; and the
choice of the best trial at the largest budget reached."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from automl.space import SearchSpace
from plumbing.errors import UserError
from plumbing.files import atomic_write_text

STUDY_FILE = "study.json"
LEADERBOARD_FILE = "leaderboard.csv"
BEST_DIR = "best"
FINAL = ("COMPLETED", "STOPPED", "FAILED")


@dataclass
class TrialRecord:
    trial_id: str
    params: dict[str, Any]
    status: str = "PENDING"  # PENDING RUNNING COMPLETED STOPPED FAILED
    best_metric: float | None = None
    epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # per validation: epoch and the model's metrics
    started: float | None = None
    seconds: float = 0.0
    error: str = ""


def select_best(records: list[TrialRecord], mode: str) -> TrialRecord | None:
    """The best trial among those that reached the largest budget any successful trial reached.

    A trial stopped at a low rung never beats one trained to the full budget on a low-epoch value.
    """
    usable = [r for r in records if r.status in ("COMPLETED", "STOPPED") and r.best_metric is not None]
    if not usable:
        return None
    top_budget = max(r.epochs for r in usable)
    finalists = [r for r in usable if r.epochs == top_budget]
    pick = max if mode == "max" else min
    return pick(finalists, key=lambda r: r.best_metric)


class StudyState:
    """What the driver knows about every trial; written to the study folder after every event."""

    def __init__(self, study_dir: Path, settings: dict[str, Any], space: SearchSpace) -> None:
        self.dir = study_dir
        self.settings = settings
        self.space = space
        self.metric, self.mode = settings["metric"], settings["mode"]
        self.trials: dict[str, TrialRecord] = {}
        self.started = time.time()
        self.status = "running"
        self.best: dict[str, Any] | None = None
        self.gain: dict[str, Any] | None = None  # what the search gained over the spec's own values (automl.gain)
        self.mlflow_run_id: str | None = None
        self.notes: list[str] = []  # what happened to the study beyond its trials (a scheduler stall)

    @classmethod
    def load(cls, study_dir: Path, space: SearchSpace) -> StudyState:
        """The state a previous driver wrote (study.json is rewritten after every trial event)."""
        doc = read_study(study_dir)
        state = cls(study_dir, doc["settings"], space)
        state.started, state.mlflow_run_id = doc.get("started", state.started), doc.get("mlflow_run_id")
        state.notes = list(doc.get("notes", []))
        for row in doc.get("records", []):
            state.trials[row["trial_id"]] = TrialRecord(**row)
        return state

    def record(self, trial_id: str, params: dict[str, Any]) -> TrialRecord:
        if trial_id not in self.trials:
            self.trials[trial_id] = TrialRecord(trial_id, {k: params.get(k) for k in self.space.names})
        return self.trials[trial_id]

    def best_so_far(self) -> TrialRecord | None:
        return select_best(list(self.trials.values()), self.mode)

    def write(self) -> None:
        atomic_write_text(self.dir / LEADERBOARD_FILE, self._leaderboard())
        counts: dict[str, int] = {}
        for r in self.trials.values():
            counts[r.status] = counts.get(r.status, 0) + 1
        best = self.best_so_far()
        doc = {
            "status": self.status,
            "settings": self.settings,
            "search_space": self.space.to_dict(),
            "started": self.started,
            "elapsed_seconds": round(time.time() - self.started, 1),
            "trials": counts,
            "best_so_far": None
            if best is None
            else {"trial_id": best.trial_id, "params": best.params, self.metric: best.best_metric, "epochs": best.epochs},
            "best": self.best,
            "gain": self.gain,
            "mlflow_run_id": self.mlflow_run_id,
            "records": [asdict(r) for r in self.trials.values()],
        }
        if self.notes:
            doc["notes"] = self.notes
        atomic_write_text(self.dir / STUDY_FILE, json.dumps(doc, indent=2, default=str))

    def _leaderboard(self) -> str:
        names = self.space.names
        best_column = f"best_{self.metric}"
        rows = [
            {
                "trial_id": r.trial_id,
                "status": r.status,
                **{n: r.params.get(n) for n in names},
                best_column: "" if r.best_metric is None else f"{r.best_metric:.6f}",
                "epochs": r.epochs,
                "seconds": f"{r.seconds:.1f}",
                "error": r.error,
            }
            for r in self.trials.values()
        ]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["trial_id", "status", *names, best_column, "epochs", "seconds", "error"])
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()


def read_study(study_dir: Path) -> dict[str, Any]:
    """A study folder's study.json, as the last event left it."""
    path = study_dir / STUDY_FILE
    if not path.is_file():
        raise UserError(f"{study_dir} holds no study ({STUDY_FILE} not found)")
    from automl.study_file import read_study_file

    return read_study_file(path)
