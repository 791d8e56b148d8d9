"""Replay input: CSV files of `ts,symbol,value` rows (see the history README), gzip accepted.

Several files are one input, merged by time (a k-way merge; rows of one instant are taken in
the order the files were given, then in file order), so an input split into files in any way
replays the same as one file.

Each file is read and checked when it is opened:

- A bad row is counted with its reason and `file:line` and skipped; it never stops a replay.
- A row stamped later than `not_after` is rejected as "time in the future". The limit is
  **wall time**: the replay's wall clock when it starts plus `FUTURE_MARGIN` (one day), since
  history cannot come from the future. (A limit taken from the file's own rows cannot tell a
  typo from a long gap between two episodes.) One row stamped 2099 thus no longer moves the
  clock so far that every later row is "older than history".
- A file not in time order is sorted on read (stably: rows of one instant keep their order),
  and a notice says so and where the order first broke. A file of more than `SORT_LIMIT` good
  rows is only held in memory up to that many; if it is out of order, that is an error naming
  the `file:line` of the first row out of order (sort it first).

A position is the number of good rows taken from each file, in the file's time order. A replay
restarted at a position sees exactly the rows an uninterrupted one would, and counts the same
rejects, since the reader reads (and checks) the rows it skips.
"""

from __future__ import annotations

import gzip
import heapq
import logging
import math
import sys
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import IO, NamedTuple

from bot.core.errors import StressbotError
from bot.core.models import INPUT_SYMBOLS, Kind

log = logging.getLogger(__name__)

HEADER = "ts,symbol,value"
FUTURE_MARGIN = 86400.0  # seconds past the wall clock at which a row is "in the future"
SORT_LIMIT = 5_000_000  # good rows of one file held (and sortable) in memory
CHUNK = 4096  # rows handed to the replay loop at a time
_BLOCK = 1 << 20  # characters read at a time
_MAX_EXAMPLES = 5
_INF = math.inf
_CANONICAL = {s: s for s in INPUT_SYMBOLS}
_RATES = frozenset(s for s, k in INPUT_SYMBOLS.items() if k is Kind.RATE)
_READ_ERRORS = (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile, zlib.error)


class HistoryFileError(StressbotError):
    """A replay file cannot be used (missing, unreadable, wrong header, out of order)."""


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


class Chunk(NamedTuple):
    """Consecutive rows of the merged input, in time order, as parallel columns."""

    ts: Sequence[float]
    symbols: Sequence[str]
    values: Sequence[float]
    positions: tuple[int, ...]  # good rows taken from each file once this chunk is taken
    files: Sequence[int] | None = None  # the file of each row (None: all from the one file)


def parse_time(text: str) -> float:
    """Seconds since the epoch of an ISO-8601 time with a zone; ValueError names the problem."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("bad time") from None
    if dt.tzinfo is None:
        raise ValueError("time without zone")
    return dt.timestamp()


def _blocks(fh: IO[str]) -> Iterator[list[str]]:
    """The file's lines, a block at a time (without their newline; a last empty line)."""
    rest = ""
    while chunk := fh.read(_BLOCK):
        lines = (rest + chunk).split("\n")
        rest = lines.pop()
        yield lines
    if rest:
        yield [rest]


class HistoryFile:
    """One replay file: its good rows in time order, checked (and sorted if need be) on open.

    Rows up to `sort_limit` are held in memory as columns; the rest of a larger file (which
    must then be in order) is read lazily, a block at a time.
    """

    def __init__(
        self,
        path: Path | str,
        index: int,
        rejects: Rejects,
        not_after: float = _INF,
        sort_limit: int = SORT_LIMIT,
    ) -> None:
        self.path = Path(path)
        self.name = self.path.name
        self.index = index
        self.rejects = rejects
        self.not_after = not_after
        self.notice: str | None = None  # "sorted on read", when it was
        self.ts: list[float] = []
        self.symbols: list[str] = []
        self.values: array[float] = array("d")
        self._line = 1  # file line of the last line read
        self._last_text = ""
        self._last_ts = 0.0
        self._prev = -_INF  # time of the previous good row, for the order check
        self._prev_text = ""
        self._disorder: tuple[int, str, str] | None = None  # first (line, ts, ts before)
        self._descents = 0
        self._fh = self._open()
        self._rest: Iterator[list[str]] | None = self._read_blocks()
        self._peeked: list[str] | None = None
        self._load(sort_limit)

    # ---- reading ---------------------------------------------------------------------------

    def _open(self) -> IO[str]:
        path = self.path
        try:
            if path.suffix == ".gz":
                fh: IO[str] = gzip.open(path, "rt", encoding="utf-8", newline="")  # noqa: SIM115 - closed by close()
            else:
                fh = path.open("r", encoding="utf-8", newline="")
        except OSError as e:
            raise HistoryFileError(f"{path}: cannot open: {e.strerror or e}") from e
        try:
            header = fh.readline().strip().lstrip("\ufeff")
        except _READ_ERRORS as e:
            fh.close()
            raise HistoryFileError(f"{path}: cannot read: {e}") from e
        if header != HEADER:
            fh.close()
            raise HistoryFileError(
                f"{path}:1: expected the header {HEADER!r}, found {header[:60]!r}"
            )
        return fh

    def _read_blocks(self) -> Iterator[list[str]]:
        try:
            yield from _blocks(self._fh)
        except _READ_ERRORS as e:
            raise HistoryFileError(f"{self.path}: cannot read past line {self._line}: {e}") from e
        finally:
            self._fh.close()

    def _next_block(self) -> list[str] | None:
        if self._peeked is not None:
            block, self._peeked = self._peeked, None
            return block
        if self._rest is None:
            return None
        try:
            return next(self._rest)
        except StopIteration:
            self._rest = None
            return None

    def close(self) -> None:
        if self._rest is not None:
            self._rest.close()  # type: ignore[attr-defined]  # a generator
            self._rest = None

    def _load(self, limit: int) -> None:
        ts, syms, vals = self.ts, self.symbols, self.values
        while len(ts) < limit and (block := self._next_block()) is not None:
            self._parse(block, ts, syms, vals)
        if self._rest is not None:  # the limit was reached: is there more?
            self._peeked = self._next_block()
        more = self._peeked is not None
        if self._disorder is None:
            return
        line, bad, before = self._disorder
        where = f"{self.name}:{line}: {bad} is earlier than the row before it ({before})"
        if more:
            self.close()
            raise HistoryFileError(
                f"{where}: the file is not in time order and, with more than {limit:,} "
                "rows, too large to sort on read; sort its rows by time first"
            )
        order = sorted(range(len(ts)), key=ts.__getitem__)  # stable: one instant keeps order
        self.ts = [ts[i] for i in order]
        self.symbols = [syms[i] for i in order]
        self.values = array("d", [vals[i] for i in order])
        self.notice = (
            f"{self.name} is not in time order ({where}; {self._descents:,} such row(s)): "
            f"sorted on read ({len(ts):,} rows)"
        )
        log.warning("%s", self.notice)

    def _parse(
        self, lines: list[str], ts: list[float], syms: list[str], vals: array[float]
    ) -> None:
        """Check `lines` and append the good rows to the columns.

        The common block (every row good, in order) takes a lean loop; a block with anything
        to report is undone and read again by the careful loop, which counts and says why.
        """
        n = len(ts)
        if self._parse_clean(lines, ts, syms, vals):
            return
        del ts[n:], syms[n:], vals[n:]
        self._parse_careful(lines, ts, syms, vals)

    def _parse_clean(
        self, lines: list[str], ts: list[float], syms: list[str], vals: array[float]
    ) -> bool:
        """The hot loop: False at the first row that is not good or not in order."""
        canon = _CANONICAL.get
        rates = _RATES
        fromiso = datetime.fromisoformat
        isfinite = math.isfinite
        not_after = self.not_after
        last_text, last_ts = "", 0.0  # the first time of a block is checked afresh
        prev = self._prev
        add_t, add_s, add_v = ts.append, syms.append, vals.append
        try:
            for line in lines:
                ts_text, sym_text, val_text = line.split(",")
                if ts_text != last_text:
                    dt = fromiso(ts_text)
                    if dt.tzinfo is None:
                        return False
                    last_ts = dt.timestamp()
                    if last_ts < prev or last_ts > not_after:
                        return False
                    last_text, prev = ts_text, last_ts
                sym = canon(sym_text)  # the one str object per symbol: less memory, fast keys
                if sym is None:
                    return False
                value = float(val_text)  # tolerates a carriage return
                if not 0.0 < value < _INF and (sym not in rates or not isfinite(value)):
                    return False
                add_t(last_ts)
                add_s(sym)
                add_v(value)
        except ValueError:
            return False
        self._line += len(lines)
        self._last_text, self._last_ts = last_text, last_ts
        self._prev, self._prev_text = prev, last_text
        return True

    def _parse_careful(
        self, lines: list[str], ts: list[float], syms: list[str], vals: array[float]
    ) -> None:
        """Every row checked, every reject counted with its line and reason."""
        reject = self.rejects.add
        name = self.name
        canon = _CANONICAL.get
        rates = _RATES
        not_after = self.not_after
        last_text, last_ts = self._last_text, self._last_ts
        prev, prev_text = self._prev, self._prev_text
        add_t, add_s, add_v = ts.append, syms.append, vals.append
        for line_no, line in enumerate(lines, self._line + 1):
            try:
                ts_text, sym_text, val_text = line.split(",")
            except ValueError:
                if line.strip():
                    reject("malformed row", f"{name}:{line_no}: {line.strip()[:80]}")
                continue
            if ts_text != last_text:
                try:
                    t = parse_time(ts_text)
                except ValueError as e:
                    reject(str(e), f"{name}:{line_no}: {ts_text[:40]!r}")
                    continue
                last_text, last_ts = ts_text, t
            sym = canon(sym_text)
            if sym is None:
                reject("unknown symbol", f"{name}:{line_no}: {sym_text[:40]!r}")
                continue
            try:
                value = float(val_text)  # tolerates a carriage return
            except ValueError:
                reject("not a number", f"{name}:{line_no}: {val_text.strip()[:40]!r}")
                continue
            if not 0.0 < value < _INF:
                if not math.isfinite(value):
                    reject("not a number", f"{name}:{line_no}: {val_text.strip()[:40]!r}")
                    continue
                if sym not in rates:
                    reject("zero or negative price", f"{name}:{line_no}: {sym} {value}")
                    continue
            if last_ts > not_after:
                reject("time in the future", f"{name}:{line_no}: {ts_text!r}")
                continue
            if last_ts < prev:
                self._descents += 1
                if self._disorder is None:
                    self._disorder = (line_no, ts_text, prev_text)
            prev, prev_text = last_ts, ts_text
            add_t(last_ts)
            add_s(sym)
            add_v(value)
        self._line += len(lines)
        self._last_text, self._last_ts = last_text, last_ts
        self._prev, self._prev_text = prev, prev_text

    # ---- rows ------------------------------------------------------------------------------

    def blocks_from(
        self, k: int
    ) -> Iterator[tuple[Sequence[float], Sequence[str], Sequence[float], int]]:
        """Column blocks of the good rows from the `k`-th on, each with its first index."""
        n = len(self.ts)
        if k < n:
            yield self.ts, self.symbols, self.values, k
        skip = max(k - n, 0)
        while (block := self._next_block()) is not None:
            ts: list[float] = []
            syms: list[str] = []
            vals: array[float] = array("d")
            self._parse(block, ts, syms, vals)
            if self._disorder is not None:
                line, bad, before = self._disorder
                raise HistoryFileError(
                    f"{self.name}:{line}: {bad} is earlier than the row before it ({before}): "
                    f"the file is not in time order and, with more than {n:,} rows, too large "
                    "to sort on read; sort its rows by time first"
                )
            if skip >= len(ts):
                skip -= len(ts)
                continue
            yield ts, syms, vals, skip
            skip = 0

    def rows_from(self, k: int) -> Iterator[tuple[float, str, float]]:
        return chain.from_iterable(
            zip(ts[i:], syms[i:], vals[i:], strict=True)
            for ts, syms, vals, i in self.blocks_from(k)
        )


class HistoryInput:
    """Replay files as one input in time order. Every file is read and checked on open."""

    def __init__(
        self,
        paths: Sequence[Path | str],
        rejects: Rejects | None = None,
        *,
        not_after: float | None = None,
        sort_limit: int = SORT_LIMIT,
    ) -> None:
        self.rejects = rejects if rejects is not None else Rejects()
        self.not_after = time.time() + FUTURE_MARGIN if not_after is None else not_after
        self.files: list[HistoryFile] = []
        try:
            for i, p in enumerate(paths):
                self.files.append(HistoryFile(p, i, self.rejects, self.not_after, sort_limit))
        except BaseException:
            self.close()
            raise

    @property
    def notices(self) -> list[str]:
        return [f.notice for f in self.files if f.notice]

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> HistoryInput:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def chunks(self, positions: Sequence[int] | None = None, size: int = CHUNK) -> Iterator[Chunk]:
        """The rows after `positions` (good rows already taken from each file), `size` at a
        time, in time order; each chunk carries the positions once it is taken."""
        pos = list(positions) if positions is not None else [0] * len(self.files)
        if len(pos) != len(self.files):
            raise ValueError(f"{len(pos)} positions for {len(self.files)} files")
        if len(self.files) == 1:
            yield from self._single(pos[0], size)
        elif self.files:
            yield from self._merged(pos, size)

    def _single(self, k: int, size: int) -> Iterator[Chunk]:
        for ts, syms, vals, i in self.files[0].blocks_from(k):
            n = len(ts)
            while i < n:
                j = min(i + size, n)
                k += j - i
                yield Chunk(ts[i:j], syms[i:j], vals[i:j], (k,))
                i = j

    def _merged(self, pos: list[int], size: int) -> Iterator[Chunk]:
        its = [f.rows_from(k) for f, k in zip(self.files, pos, strict=True)]
        heap: list[tuple[float, int, str, float]] = []
        for fi, it in enumerate(its):
            first = next(it, None)
            if first is not None:
                heap.append((first[0], fi, first[1], first[2]))
        heapq.heapify(heap)  # one entry per file: (time, file) is unique, ties go by file
        replace, pop = heapq.heapreplace, heapq.heappop
        while heap:
            ts: list[float] = []
            syms: list[str] = []
            vals: list[float] = []
            src: list[int] = []
            while heap and len(ts) < size:
                t, fi, s, v = heap[0]
                ts.append(t)
                syms.append(s)
                vals.append(v)
                src.append(fi)
                pos[fi] += 1
                nxt = next(its[fi], None)
                if nxt is None:
                    pop(heap)
                else:
                    replace(heap, (nxt[0], fi, nxt[1], nxt[2]))
            yield Chunk(ts, syms, vals, tuple(pos), src)


def read_history(
    paths: Sequence[Path | str],
    rejects: Rejects | None = None,
    start: tuple[int, int] = (0, 0),
    *,
    not_after: float | None = None,
) -> Iterator[tuple[int, int, float, str, float]]:
    """Yield (file index, row index, ts, symbol, value) for every good row, in time order.

    `row index` counts a file's good rows from 0 in its time order. `start` = (file, row)
    starts file `file` at good row `row`, skips the files before it and starts the ones after
    it at their beginning (a position in files read one after the other).
    """
    with HistoryInput(paths, rejects, not_after=not_after) as inp:
        pos = [
            sys.maxsize if i < start[0] else start[1] if i == start[0] else 0
            for i in range(len(inp.files))
        ]
        taken = list(pos)
        for c in inp.chunks(pos):
            src = c.files if c.files is not None else [0] * len(c.ts)
            for fi, t, s, v in zip(src, c.ts, c.symbols, c.values, strict=True):
                yield fi, taken[fi], t, s, v
                taken[fi] += 1
