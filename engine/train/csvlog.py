"""Append-only CSV logs for training runs that survive a resume: rows past the resumed step are dropped."""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


class CsvLog:
    """A CSV file with fixed columns (one of them ``step``). Opening it for a run that resumes at ``resume_step``
    keeps the earlier rows up to that step; a fresh run (``resume_step`` 0) starts with just the header. Rows may
    hold more keys than the columns (the training loop offers every timing figure; each log lists the ones it
    keeps); a missing column stays empty."""

    def __init__(self, path: Path, fieldnames: Sequence[str], *, resume_step: int):
        self.path = Path(path)
        self.fieldnames = list(fieldnames)
        rows = []
        if resume_step > 0 and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, *rows: dict) -> None:
        """Append rows (their keys outside the columns are left out); floats are written with 6 significant digits."""
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fieldnames, extrasaction="ignore").writerows(
                [{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
