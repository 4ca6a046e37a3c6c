"""`automl status`'s leaderboard fits an 80-column terminal without cutting a value, and says errors in full."""

from __future__ import annotations

from rich.console import Console

from automl.status_table import cell, column_titles, error_lines, leaderboard_table

ROWS = [
    {"trial_id": "80181235", "status": "RUNNING", "train.lr": "0.00018093", "train.loss_crf_weight": "1.8264",
     "train.loss_mil_weight": "2.6881", "train.warmup_epochs": "0", "best_mIoU": "0.692345", "epochs": "13",
     "seconds": "139.4", "error": ""},
    {"trial_id": "aec1ac8e", "status": "FAILED", "train.lr": "2e-05", "train.loss_crf_weight": "0.5",
     "train.loss_mil_weight": "4.0", "train.warmup_epochs": "1", "best_mIoU": "", "epochs": "2", "seconds": "12.0",
     "error": "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.15 GiB total capacity)"},
]


def _printed(width: int) -> str:
    console = Console(width=width, record=True)
    console.print(leaderboard_table("mal · random · running · 387s", ROWS, "best_mIoU"))
    return console.export_text()


def test_the_table_fits_80_columns_with_every_value_whole():
    text = _printed(80)
    assert max(map(len, text.splitlines())) <= 80
    for value in ("80181235", "aec1ac8e", "running", "failed", "0.000181", "1.83", "2.69", "0.6923", "139", "seconds"):
        assert value in text, (value, text)
    assert "…" not in text and "CUDA" not in text  # the error is said below the table, not folded into it


def test_titles_are_short_unless_two_fields_share_a_last_part():
    titles = column_titles(["trial_id", "train.lr", "model.lr", "train.loss_crf_weight", "best_mIoU"], "best_mIoU")
    assert titles == {"trial_id": "trial id", "train.lr": "train.lr", "model.lr": "model.lr",
                      "train.loss_crf_weight": "loss crf weight", "best_mIoU": "best mIoU"}
    assert column_titles(["trial_id", "best_val_loss"], "best_val_loss")["best_val_loss"] == "best val_loss"


def test_cells_round_numbers_and_keep_text():
    assert cell("train.lr", "0.00018093", "best_mIoU") == "0.000181"
    assert cell("best_mIoU", "0.692345", "best_mIoU") == "0.6923"
    assert cell("seconds", "139.6", "best_mIoU") == "140"
    assert cell("epochs", "13", "best_mIoU") == "13"
    assert cell("model.backbone", "vit-micro/8", "best_mIoU") == "vit-micro/8"  # a choice, not a number
    assert cell("best_mIoU", "", "best_mIoU") == ""


def test_an_error_is_one_line_of_its_own():
    assert error_lines(ROWS) == [f"aec1ac8e failed: {ROWS[1]['error']}"]
