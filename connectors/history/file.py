"""Replay input: CSV files of `ts,symbol,value` rows (see the history README), gzip accepted.

Rows are read in file order. A bad row is counted with its reason and position and skipped;
it never stops the replay. The reader can restart at a position, for `--resume`.
"""

from __future__ import annotations

import gzip
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import IO

from bot.core.errors import StressbotError
from bot.core.models import INPUT_SYMBOLS, Kind

HEADER = "ts,symbol,value"
_MAX_EXAMPLES = 5


class HistoryFileError(StressbotError):
    """A replay file cannot be used at all (missing, unreadable, wrong header)."""


@dataclass
class Rejects:
    """Rows skipped, by reason, with the first few examples as `file:line: text`."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, where: str) -> None:
        self.counts[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < _MAX_EXAMPLES:
            ex.append(where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _open(path: Path) -> IO[str]:
    try:
        if path.suffix == ".gz":
            return gzip.open(path, "rt", encoding="utf-8", newline="")
        return path.open("r", encoding="utf-8", newline="")
    except OSError as e:
        raise HistoryFileError(f"{path}: cannot open: {e.strerror or e}") from e


def read_history(
    paths: Sequence[Path | str],
    rejects: Rejects | None = None,
    start: tuple[int, int] = (0, 0),
) -> Iterator[tuple[int, int, float, str, float]]:
    """Yield (file index, row index, ts, symbol, value) for every good row.

    `row index` counts data rows from 0 within a file; `start` = (file, row) skips every row
    before it, so a resumed replay sees exactly the rows an uninterrupted one would.
    """
    rejects = rejects if rejects is not None else Rejects()
    kinds = INPUT_SYMBOLS
    rate = Kind.RATE
    fromiso = datetime.fromisoformat
    isfinite = math.isfinite
    for fi, p in enumerate(paths):
        if fi < start[0]:
            continue
        path = Path(p)
        skip = start[1] if fi == start[0] else 0
        with _open(path) as fh:
            try:
                header = fh.readline().strip().lstrip("\ufeff")
            except (OSError, EOFError, UnicodeDecodeError) as e:
                raise HistoryFileError(f"{path}: cannot read: {e}") from e
            if header != HEADER:
                raise HistoryFileError(
                    f"{path}:1: expected the header {HEADER!r}, found {header[:60]!r}"
                )
            last_ts_text = ""
            last_ts = 0.0
            ri = skip - 1
            try:
                for ri, line in enumerate(islice(fh, skip, None), skip):
                    parts = line.split(",")
                    if len(parts) != 3:
                        if line.strip():
                            rejects.add(
                                "malformed row", f"{path.name}:{ri + 2}: {line.strip()[:80]}"
                            )
                        continue
                    ts_text, sym, val_text = parts
                    if ts_text != last_ts_text:
                        try:
                            dt = fromiso(ts_text)
                        except ValueError:
                            rejects.add("bad time", f"{path.name}:{ri + 2}: {ts_text[:40]!r}")
                            continue
                        if dt.tzinfo is None:
                            rejects.add("time without zone", f"{path.name}:{ri + 2}: {ts_text!r}")
                            continue
                        last_ts_text = ts_text
                        last_ts = dt.timestamp()
                    kind = kinds.get(sym)
                    if kind is None:
                        rejects.add("unknown symbol", f"{path.name}:{ri + 2}: {sym[:40]!r}")
                        continue
                    try:
                        value = float(val_text)  # tolerates the line's own newline
                    except ValueError:
                        rejects.add(
                            "not a number", f"{path.name}:{ri + 2}: {val_text.strip()[:40]!r}"
                        )
                        continue
                    if value <= 0.0 or not isfinite(value):
                        if not isfinite(value):
                            rejects.add(
                                "not a number", f"{path.name}:{ri + 2}: {val_text.strip()[:40]!r}"
                            )
                            continue
                        if kind is not rate:
                            rejects.add(
                                "zero or negative price", f"{path.name}:{ri + 2}: {sym} {value}"
                            )
                            continue
                    yield fi, ri, last_ts, sym, value
            except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as e:
                raise HistoryFileError(f"{path}: cannot read past row {ri + 2}: {e}") from e
