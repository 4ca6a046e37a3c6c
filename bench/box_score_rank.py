"""How well box_score ranks like mIoU: Spearman's rank correlation over every (trial, epoch) point of finished
studies whose validation set has masks (`records[].history` holds both metrics).

`python -m bench.box_score_rank STUDY_DIR [STUDY_DIR ...]` prints one row per study and writes
bench/results/box_score_rank.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scipy.stats import spearmanr

from plumbing.files import atomic_write_text

SCORES = ("box_score", "box_projection", "box_edge")
RESULTS = Path(__file__).parent / "results" / "box_score_rank.json"


def points(study_dir: Path) -> list[dict[str, float]]:
    """Every validation of every trial that carries mIoU and the box scores."""
    doc = json.loads((study_dir / "study.json").read_text())
    return [h for record in doc["records"] for h in record["history"] if "mIoU" in h and all(s in h for s in SCORES)]


def rank_agreement(study_dir: Path) -> dict[str, float | int | str]:
    """Spearman's rho of each box score with mIoU over the study's points (NaN with fewer than 3)."""
    found = points(study_dir)
    row: dict[str, float | int | str] = {"study": str(study_dir), "points": len(found)}
    for score in SCORES:
        row[score] = float(spearmanr([p[score] for p in found], [p["mIoU"] for p in found]).statistic) if len(found) > 2 else float("nan")
    return row


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.box_score_rank", description=__doc__)
    parser.add_argument("studies", nargs="+", type=Path)
    rows = [rank_agreement(study) for study in parser.parse_args().studies]
    for row in rows:
        print(f"{row['study']}: {row['points']} points, " + ", ".join(f"rho({s}, mIoU) {row[s]:.3f}" for s in SCORES))
    RESULTS.parent.mkdir(exist_ok=True)
    atomic_write_text(RESULTS, json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
