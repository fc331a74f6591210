"""The per-epoch history a training run returns, and its one table format (log, CSV and JSON)."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .files import replacing, write_text

# The per-epoch table, written once for the log, the CSV and the JSON: (key, width, format). ``lr`` and
# ``momentum`` are the last batch's; a history row also keeps every batch's LR under ``lrs`` (JSON only).
COLUMNS = (("epoch", 5, "d"), ("train_loss", 10, ".4f"), ("train_acc", 9, ".2f"), ("test_loss", 9, ".4f"),
           ("test_acc", 8, ".2f"), ("lr", 9, ".4g"), ("momentum", 8, ".4g"), ("seconds", 7, ".1f"))
HISTORY_KEYS = tuple(key for key, _, _ in COLUMNS)


class History(list):
    """One dict per epoch with ``HISTORY_KEYS``; a list, so it is JSON-ready as it is."""

    def save(self, folder: str | os.PathLike, stem: str = "history") -> tuple[Path, Path]:
        folder = Path(folder)
        json_path, csv_path = folder / f"{stem}.json", folder / f"{stem}.csv"
        write_text(json_path, json.dumps(list(self), indent=1))
        with replacing(csv_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_KEYS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(self)
        return json_path, csv_path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        """A saved history: ``history.json`` (with every batch's LR) or ``history.csv`` (the table only)."""
        path = Path(path)
        if path.suffix != ".csv":
            return cls(json.loads(path.read_text()))
        with open(path, newline="") as f:
            return cls({key: int(value) if key == "epoch" else float(value) for key, value in row.items() if value}
                       for row in csv.DictReader(f))

    def best(self, key: str = "test_acc") -> dict:
        return max(self, key=lambda row: row[key])


def format_row(row: dict) -> str:
    """One line of the epoch table; a value the row lacks (e.g. momentum in an older run) shows as "-"."""
    return "  ".join(f"{'-':>{width}}" if row.get(key) is None else f"{row[key]:>{width}{spec}}"
                     for key, width, spec in COLUMNS)


TABLE_HEADER = "  ".join(f"{key:>{width}}" for key, width, _ in COLUMNS)
