"""`automl status`'s leaderboard as a table that fits an 80-column terminal.

leaderboard.csv keeps full field names and 6 decimals for tools; the terminal gets a searched field's last
part (`train.loss_crf_weight` as "loss crf weight", which wraps at its spaces), 3 significant digits for the
values and whole seconds. A failed trial's error follows the table on a line of its own (in a column it
would fold into a tower of fragments), as do the full names and values of the best trial.
"""

from __future__ import annotations

from typing import Any

__all__ = ["error_lines", "leaderboard_table"]


def column_titles(columns: list[str], metric_column: str) -> dict[str, str]:
    """Each column's title, spaced at its underscores: a dotted field by its last part, unless another
    column has the same last part. The metric keeps its name as the study knows it ("best_val_loss" is titled
    "best val_loss")."""
    last = [c.rsplit(".", 1)[-1] for c in columns]
    titles = {c: (short if last.count(short) == 1 else c).replace("_", " ") for c, short in zip(columns, last, strict=True)}
    if metric_column in titles:
        titles[metric_column] = metric_column.replace("best_", "best ", 1)
    return titles


def cell(column: str, text: str, metric_column: str) -> str:
    """A leaderboard cell as the terminal shows it; text that is not a number (or an edited cell) as it is."""
    if column == "trial_id":
        return text
    if column == "status":
        return text.lower()
    try:
        value = float(text)
    except ValueError:
        return text
    if column == "seconds":
        return f"{value:.0f}"
    if text.lstrip("-").isdigit():
        return text
    return f"{value:.4g}" if column == metric_column else f"{value:.3g}"


def leaderboard_table(title: str, rows: list[dict[str, str]], metric_column: str) -> Any:
    """A rich Table of the leaderboard rows (already sorted), compact enough for 80 columns."""
    from rich import box
    from rich.table import Table

    columns = [c for c in rows[0] if c != "error"] if rows else ["trial_id"]
    table = Table(title=title, box=box.SIMPLE_HEAD, collapse_padding=True, pad_edge=False, show_edge=False)
    shown = [[cell(c, row.get(c, ""), metric_column) for c in columns] for row in rows]
    for j, title_text in enumerate(column_titles(columns, metric_column).values()):
        # neither a value nor a word of the title is cut: the title wraps at its spaces
        widest = max([len(r[j]) for r in shown] + [len(word) for word in title_text.split()])
        table.add_column(title_text, min_width=widest, max_width=widest)
    for r in shown:
        table.add_row(*r)
    return table


def error_lines(rows: list[dict[str, str]]) -> list[str]:
    """One line per trial that recorded an error: its id, then the error."""
    return [f"{r.get('trial_id', '?')} {r.get('status', '').lower()}: {r['error']}" for r in rows if r.get("error")]
