"""Checkpoint pages: a checkpoint writes the series history that changed, not all of it.

The engine keeps a year and more of history for its regimes (5-minute bars past two hours),
and the live engine checkpoints every few seconds. Written whole, one busy symbol's series
is about 13 MB of JSON after a year: a dozen of them would be some 150 MB and over a second
of CPU per checkpoint, and as much Redis replication and AOF traffic. So the series are cut
into pages of one day of event time (`PAGE`, a whole number of bars, so a bar never
straddles two pages), kept as the fields of one hash beside the checkpoint, and a checkpoint
writes only the pages that may have changed since the last committed one:

* every page from the newest point written last time on (appends, a new close of the newest
  point);
* every page from `Series.dirty_from` on: the earliest point any other change touched
  (corrections, late ticks, compaction, a derived series recomputed from a time);
* the first page when points were trimmed from the front (`Series.head_cut`);

and drops the pages that no longer hold a point.

Why a day. With second-level ticks the newest page is rewritten at every checkpoint, and
it holds the last two hours as 1-second points (up to 7,200) whatever the page length from
two hours up, plus the day's bars: an hour would halve that at most. With hourly or daily
data (backfill, replays of history files) an hour-long page holds one point, and a replay of
the 2019-2021 dev file wrote 168,000 pages of ~80 bytes: their per-page cost made it slower
than writing every series whole. A day holds 24 hourly points: 18,000 pages.

The checkpoint's own state records each series' number of points and bars, so a restore
checks the pages it read add up.

Revisions. The pages of a committed checkpoint carry a revision, and a write names the
revision it was computed against (`PageWrite.base`): the store applies it only onto exactly
that revision (a compare-and-set in the same script as the checkpoint, `bot.store.scripts`),
so the pages in the store are always those of one checkpoint. Whenever this engine does not
know for certain what the store holds (before its first commit, after a restore from a full
snapshot, while a write is in flight and after one that failed or was refused because a
failover lost a commit or the store was emptied), `base` is None and the write replaces
every page.
"""

from __future__ import annotations

import math
import uuid
from bisect import bisect_left
from collections.abc import Mapping
from typing import Any

import orjson

from bot.core.models import PageWrite
from bot.engine.series import BAR, Series

PAGE = 288 * BAR  # seconds of event time per page: one day
assert PAGE % BAR == 0


class PagesError(Exception):
    """The pages read with a checkpoint do not make up the series its state records."""


def page_name(symbol: str, page: int) -> str:
    return f"{symbol}:{page}"


def encode_page(s: Series, lo: int, hi: int) -> bytes:
    """Points [lo, hi) of `s` (one page): times, closes and, for those that are bars, their
    first time, open, high, low and time integral."""
    b = max(0, min(hi, s.nb) - lo)
    return orjson.dumps(
        [
            s.ts[lo:hi],
            s.values[lo:hi],
            *(lst[lo : lo + b] for lst in (s.b_t0, s.b_open, s.b_high, s.b_low, s.b_area)),
        ]
    )


class SeriesPages:
    """What this engine last committed of the pages, and the next write."""

    def __init__(self) -> None:
        self.rev: str | None = None  # the revision in the store, when known for certain
        self._ids: dict[str, list[int]] = {}  # symbol -> pages written, in order
        self._tail: dict[str, float] = {}  # symbol -> newest point time written
        self._pending: tuple[str, dict[str, list[int]], dict[str, float]] | None = None
        self._run = uuid.uuid4().hex[:12]
        self._seq = 0

    def write(self, series: Mapping[str, Series]) -> PageWrite:
        """The pages changed since the last committed write (all of them when that is not
        known), the series' change marks cleared. Until `written` confirms it, the store's
        revision is unknown, so the write after a failed or refused one replaces them all."""
        base, self.rev = self.rev, None
        self._seq += 1
        rev = f"{self._run}.{self._seq}"
        put: dict[str, bytes] = {}
        drop: list[str] = []
        ids_after: dict[str, list[int]] = {}
        tails: dict[str, float] = {}
        for sym, s in series.items():
            old = self._ids.get(sym, []) if base is not None else []
            start = -math.inf
            if base is not None and sym in self._tail:
                start = min(s.dirty_from, self._tail[sym])
            s.dirty_from, cut, s.head_cut = math.inf, s.head_cut, False
            tss = s.ts
            if not tss:
                drop += (page_name(sym, p) for p in old)
                continue
            first = int(tss[0] // PAGE)
            from_page = max(first, int(start // PAGE)) if start > -math.inf else first
            # pages before `from_page` stand as written, less those trimmed away
            k = bisect_left(old, first)
            m = bisect_left(old, from_page, k)
            drop += (page_name(sym, p) for p in old[:k])
            kept = old[k:m]
            if cut and kept and kept[0] == first:  # its front was trimmed: written again
                hi = bisect_left(tss, (first + 1) * PAGE)
                put[page_name(sym, first)] = encode_page(s, 0, hi)
            fresh: list[int] = []
            i = bisect_left(tss, from_page * PAGE)
            while i < len(tss):
                p = int(tss[i] // PAGE)
                hi = bisect_left(tss, (p + 1) * PAGE, i)
                put[page_name(sym, p)] = encode_page(s, i, hi)
                fresh.append(p)
                i = hi
            gone = set(old[m:]).difference(fresh)
            drop += (page_name(sym, p) for p in sorted(gone))
            ids_after[sym] = kept + fresh
            tails[sym] = tss[-1]
        self._pending = (rev, ids_after, tails)
        return PageWrite(base, rev, put, drop)

    def written(self, w: PageWrite) -> None:
        """`w` was committed: the store now holds its revision."""
        if self._pending is None or self._pending[0] != w.rev:
            return  # an older write than the last made: the next one replaces them all
        self.rev, self._ids, self._tail = self._pending
        self._pending = None

    def restored(self, w: PageWrite, series: Mapping[str, Series]) -> None:
        """The series were restored from `w`, the pages the store holds."""
        self.rev = w.rev
        self._ids = {sym: sorted({int(p // PAGE) for p in s.ts}) for sym, s in series.items()}
        self._tail = {sym: s.ts[-1] for sym, s in series.items() if s.ts}
        self._pending = None
        for s in series.values():
            s.dirty_from, s.head_cut = math.inf, False


def read_pages(w: PageWrite, layout: Mapping[str, list[int]]) -> dict[str, dict[str, Any]]:
    """The series data (`Series.restore`'s format) the pages `w.put` make up, per symbol,
    checked against the checkpoint's `layout` (symbol -> [points, bars])."""
    by_symbol: dict[str, list[tuple[int, bytes]]] = {}
    for name, raw in w.put.items():
        sym, _, number = name.rpartition(":")
        try:
            by_symbol.setdefault(sym, []).append((int(number), raw))
        except ValueError:
            raise PagesError(f"page {name!r}: not SYMBOL:PAGE") from None
    out: dict[str, dict[str, Any]] = {}
    for sym, (n, nb) in layout.items():
        cols: list[list[float]] = [[] for _ in range(7)]
        for page, raw in sorted(by_symbol.pop(sym, [])):
            try:
                part = orjson.loads(raw)
                ts, nbars = part[0], len(part[2])
                ok = len(part) == 7 and len(part[1]) == len(ts)
                ok = ok and all(len(c) == nbars for c in part[2:]) and nbars <= len(ts)
            except (orjson.JSONDecodeError, TypeError, IndexError):
                ok = False
            if not ok:
                raise PagesError(f"page {page_name(sym, page)!r} is not a page of points")
            if nbars and len(cols[2]) < len(cols[0]):
                raise PagesError(f"page {page_name(sym, page)!r}: bars after 1-second points")
            for c, col in zip(cols, part, strict=True):
                c += col
        if len(cols[0]) != n or len(cols[2]) != nb:
            raise PagesError(
                f"the pages of {sym} hold {len(cols[0]):,} points ({len(cols[2]):,} bars); "
                f"the checkpoint recorded {n:,} ({nb:,})"
            )
        out[sym] = {"ts": cols[0], "v": cols[1], "bars": cols[2:]}
    if by_symbol:
        raise PagesError(f"pages of series the checkpoint does not hold: {sorted(by_symbol)}")
    return out
