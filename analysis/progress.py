"""Reading a trial's progress.csv (Ray's one row per reported epoch): checked row by row, and
read into frames many trials at a time."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd

from tunelab.core import metrics as M


class TrialFileError(ValueError):
    """One trial's files cannot be read; the loader skips that trial with a warning."""


class Progress:
    """A trial's progress.csv as read and checked: its header, its rows (text) and its body, the
    text after the header line. The frames are made for all trials of a header at once
    (`tunelab.analysis.load`): one `read_csv` a trial was a third of `report` at 10,000 trials."""

    def __init__(self, header: tuple[str, ...] = (), rows: list[list[str]] | None = None, body: str = ""):
        self.header, self.rows, self.body = header, rows or [], body

    def last(self, column: str) -> str | None:
        """The last row's value of `column`, or None (no rows, no such column, an empty value)."""
        if not self.rows or column not in self.header:
            return None
        return self.rows[-1][self.header.index(column)] or None


def read_progress_rows(progress: Path) -> Progress:
    """progress.csv checked; a row with fewer or more fields than the header, an unclosed quote (a
    file cut off mid-write, or edited) or an epoch that is no whole number makes the whole trial
    unreadable rather than silently half-read. The rows are written out again for the frame:
    what pandas reads is what was checked, whatever the file's line endings or quoting."""
    if not progress.exists() or progress.stat().st_size == 0:
        return Progress()
    try:
        text = progress.read_text(encoding="utf-8")
        rows = list(csv.reader(io.StringIO(text), strict=True))
    except (UnicodeDecodeError, csv.Error, OSError) as exc:
        raise TrialFileError(f"{progress.name} is unreadable ({type(exc).__name__})") from None
    if not rows:
        return Progress()
    if not rows[0]:
        raise TrialFileError(f"{progress.name} starts with an empty line, not its header")
    width = len(rows[0])
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            raise TrialFileError(f"{progress.name} line {number} has {len(row)} fields, the header {width} "
                                 "(truncated or edited)")
    header = tuple(rows[0])
    if M.EPOCH in header:
        column = header.index(M.EPOCH)
        if not all(_an_epoch(row[column]) for row in rows[1:]):
            raise TrialFileError(f"{progress.name} has an {M.EPOCH!r} value that is no whole number from 0 to "
                                 f"{MAX_EPOCH:.0e}")
    body = io.StringIO()
    csv.writer(body, lineterminator="\n").writerows(rows[1:])
    return Progress(header, rows[1:], body.getvalue())


MAX_EPOCH = 1e9  # beyond any run; 1e300 or inf would overflow the integer columns made from it


def _an_epoch(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return 0 <= value <= MAX_EPOCH and value.is_integer()  # NaN fails the range


def _csv_line(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(row)
    return buffer.getvalue()


def progress_frame(progress: list[Progress], names: list[str]) -> pd.DataFrame:
    """The rows of trials that share one header, as one frame with each row's `trial_dir`."""
    text = _csv_line(list(progress[0].header)) + "".join(p.body for p in progress)
    try:
        frame = pd.read_csv(io.StringIO(text), dtype={"trial_id": str})  # hex ids such as "12e45678" stay text
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise TrialFileError(f"progress.csv is not a CSV table ({type(exc).__name__})") from None
    counts = [len(p.rows) for p in progress]
    if len(frame) != sum(counts):
        raise TrialFileError("progress.csv rows were not read one for one")
    return frame.assign(trial_dir=[name for name, n in zip(names, counts) for _ in range(n)])
