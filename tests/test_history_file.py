"""Reading replay files: bad rows are counted with where and why, never fatal."""

from __future__ import annotations

import gzip
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import connectors.history.file as history_file
from bot.core.models import parse_iso_utc
from connectors.history.file import HistoryFileError, HistoryInput, Rejects, read_history

GOOD = "2020-03-12T10:00:00Z,BTC/USD,7300.5\n2020-03-12T10:00:00Z,US10Y,0.88\n"


def test_reads_rows_in_file_order_with_positions(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("ts,symbol,value\n" + GOOD)
    rows = list(read_history([p]))
    assert [(r[0], r[1], r[3], r[4]) for r in rows] == [
        (0, 0, "BTC/USD", 7300.5),
        (0, 1, "US10Y", 0.88),
    ]
    assert rows[0][2] == 1584007200.0


def test_gzip_is_accepted(tmp_path: Path) -> None:
    p = tmp_path / "h.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("ts,symbol,value\n" + GOOD)
    assert len(list(read_history([p]))) == 2


def test_bad_rows_are_counted_by_reason_with_their_line(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text(
        "ts,symbol,value\n" + GOOD + "yesterday,BTC/USD,1\n"
        "2020-03-12T11:00:00Z,DOGE/USD,1\n"
        "2020-03-12T11:00:00Z,SPX,abc\n"
        "2020-03-12T11:00:00Z,SPX,nan\n"
        "2020-03-12T11:00:00Z,SPX,0\n"
        "2020-03-12T11:00:00Z,XAU/USD,-5\n"
        "2020-03-12T11:00:00,SPX,2500\n"
        "2020-03-12T11:00:00Z,SPX\n"
        "2020-03-12T11:00:00Z,US2Y,0.0\n"
    )
    rejects = Rejects()
    rows = list(read_history([p], rejects))
    assert [r[3] for r in rows] == ["BTC/USD", "US10Y", "US2Y"]  # a zero yield is a real value
    assert dict(rejects.counts) == {
        "bad time": 1,
        "unknown symbol": 1,
        "not a number": 2,
        "zero or negative price": 2,
        "time without zone": 1,
        "malformed row": 1,
    }
    assert rejects.examples["unknown symbol"] == ["h.csv:5: 'DOGE/USD'"]


def test_wrong_header_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "h.csv"
    p.write_text("date,ticker,close\n")
    expected = re.escape("h.csv:1: expected the header 'ts,symbol,value'")
    with pytest.raises(HistoryFileError, match=expected):
        list(read_history([p]))


def test_start_position_skips_exactly_the_rows_before_it(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("ts,symbol,value\n" + GOOD)
    b.write_text("ts,symbol,value\n" + GOOD)
    rows = list(read_history([a, b], start=(0, 1)))
    assert [(r[0], r[1]) for r in rows] == [(0, 1), (1, 0), (1, 1)]


# ---- several files, order, the future, positions ---------------------------------------------

HDR = "ts,symbol,value\n"


def _write(p: Path, *rows: str) -> Path:
    p.write_text(HDR + "".join(r + "\n" for r in rows))
    return p


def test_several_files_are_merged_by_time_ties_in_file_order(tmp_path: Path) -> None:
    a = _write(
        tmp_path / "a.csv",
        "2020-03-12T10:00:00Z,BTC/USD,1",
        "2020-03-12T12:00:00Z,BTC/USD,3",
        "2020-03-12T13:00:00Z,BTC/USD,4",
    )
    b = _write(
        tmp_path / "b.csv",
        "2020-03-12T11:00:00Z,US10Y,2",
        "2020-03-12T12:00:00Z,US10Y,3.5",
    )
    rows = [(fi, ri, v) for fi, ri, _, _, v in read_history([a, b])]
    assert rows == [(0, 0, 1.0), (1, 0, 2.0), (0, 1, 3.0), (1, 1, 3.5), (0, 2, 4.0)]


def test_a_file_out_of_order_is_sorted_on_read_and_says_where(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "h.csv",
        "2020-03-12T11:00:00Z,BTC/USD,2",
        "2020-03-12T10:00:00Z,BTC/USD,1",
        "2020-03-12T11:00:00Z,US10Y,0.8",
        "2020-03-12T12:00:00Z,BTC/USD,3",
    )
    with HistoryInput([p]) as inp:
        rows = [
            (t, s, v)
            for c in inp.chunks()
            for t, s, v in zip(c.ts, c.symbols, c.values, strict=True)
        ]
        (notice,) = inp.notices
    assert [v for _, _, v in rows] == [1.0, 2.0, 0.8, 3.0]  # stable: one instant keeps its order
    assert "h.csv:3: 2020-03-12T10:00:00Z is earlier than the row before it" in notice
    assert "sorted on read (4 rows)" in notice


def test_a_sorted_file_has_no_notice(tmp_path: Path) -> None:
    p = _write(tmp_path / "h.csv", "2020-03-12T10:00:00Z,BTC/USD,1", "2020-03-12T10:00:00Z,SPX,1")
    with HistoryInput([p]) as inp:
        assert inp.notices == []


def test_a_file_too_large_to_sort_is_an_error_naming_the_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_file, "_BLOCK", 40)  # about a row per block
    rows = [f"2020-03-12T10:{m:02d}:00Z,BTC/USD,{m + 1}" for m in range(8)]
    rows[2], rows[1] = rows[1], rows[2]  # line 4 is out of order, inside the sortable part
    p = _write(tmp_path / "h.csv", *rows)
    with pytest.raises(HistoryFileError, match=r"h\.csv:4: .*too large to sort on read"):
        HistoryInput([p], sort_limit=4)
    assert len(list(read_history([p]))) == 8  # below the limit it is simply sorted

    rows = [f"2020-03-12T10:{m:02d}:00Z,BTC/USD,{m + 1}" for m in range(8)]
    rows[7], rows[6] = rows[6], rows[7]  # line 9: past the part held in memory
    p = _write(tmp_path / "h.csv", *rows)
    with HistoryInput([p], sort_limit=4) as inp:
        it = inp.chunks()
        with pytest.raises(HistoryFileError, match=r"h\.csv:9: .*not in time order"):
            list(it)


def test_rows_in_the_future_are_rejected_with_their_line_and_change_nothing(
    tmp_path: Path,
) -> None:
    p = _write(
        tmp_path / "h.csv",
        "2020-03-12T10:00:00Z,BTC/USD,1",
        "2099-01-01T00:00:00Z,BTC/USD,2",
        "2020-03-12T11:00:00Z,BTC/USD,3",
    )
    rejects = Rejects()
    with HistoryInput([p], rejects, not_after=parse_iso_utc("2030-01-01T00:00:00Z")) as inp:
        assert inp.notices == []  # the 2099 row does not make the file look out of order
        got = [v for c in inp.chunks() for v in c.values]
    assert got == [1.0, 3.0]
    assert dict(rejects.counts) == {"time in the future": 1}
    assert rejects.examples["time in the future"] == ["h.csv:3: '2099-01-01T00:00:00Z'"]


def test_the_future_is_wall_time_plus_a_day_by_default(tmp_path: Path) -> None:
    soon = datetime.fromtimestamp(time.time() + 3600, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    later = datetime.fromtimestamp(time.time() + 3 * 86400, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = _write(tmp_path / "h.csv", f"{soon},BTC/USD,1", f"{later},BTC/USD,2")
    rejects = Rejects()
    assert [r[4] for r in read_history([p], rejects)] == [1.0]
    assert rejects.counts["time in the future"] == 1


def test_careful_and_lean_reading_agree_on_mixed_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = [f"2020-03-12T{h:02d}:00:00Z,BTC/USD,{h + 1}" for h in range(20)]
    rows[5] = "2020-03-12T05:00:00Z,BTC/USD,x"
    rows[12] = "2020-03-12T12:00:00Z,US2Y,0.0"  # a zero rate is a value
    p = tmp_path / "h.csv"
    p.write_bytes((HDR + "".join(r + "\r\n" for r in rows)).encode())  # CRLF too
    for block in (1 << 20, 50):
        monkeypatch.setattr(history_file, "_BLOCK", block)
        rejects = Rejects()
        got = [(s, v) for _, _, _, s, v in read_history([p], rejects)]
        assert len(got) == 19 and ("US2Y", 0.0) in got
        assert rejects.examples == {"not a number": ["h.csv:7: 'x'"]}


def test_a_restart_at_any_position_sees_the_rest_and_the_same_rejects(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_file, "_BLOCK", 64)
    a = _write(
        tmp_path / "a.csv",
        *(f"2020-03-12T10:{m:02d}:00Z,BTC/USD,{m + 1}" for m in range(0, 30, 2)),
        "2020-03-12T11:00:00Z,BTC/USD,-1",
    )
    b = _write(
        tmp_path / "b.csv",
        *(f"2020-03-12T10:{m:02d}:00Z,XAU/USD,{m + 1}" for m in range(1, 30, 3)),
        "2020-03-12T11:00:00Z,NOPE,1",
    )

    def rows(inp: HistoryInput, pos: tuple[int, ...] | None = None) -> list[tuple[float, str]]:
        return [
            (t, s) for c in inp.chunks(pos, size=3) for t, s in zip(c.ts, c.symbols, strict=True)
        ]

    with HistoryInput([a, b], sort_limit=4) as inp:
        full = rows(inp)
        full_rejects = inp.rejects.total
    with HistoryInput([a, b], sort_limit=4) as inp:
        cuts = [(len(c.ts), c.positions) for c in inp.chunks(size=3)]
    taken = 0
    for n, pos in cuts:
        taken += n
        with HistoryInput([a, b], sort_limit=4) as inp:
            assert rows(inp, pos) == full[taken:]
            assert inp.rejects.total == full_rejects == 2


def test_a_future_time_repeated_across_blocks_is_rejected_each_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(history_file, "_BLOCK", 40)  # about a row per block
    p = _write(
        tmp_path / "h.csv",
        "2020-03-12T10:00:00Z,BTC/USD,1",
        "2099-01-01T00:00:00Z,BTC/USD,2",
        "2099-01-01T00:00:00Z,XAU/USD,3",
        "2099-01-01T00:00:00Z,SPX,4",
        "2020-03-12T11:00:00Z,BTC/USD,5",
    )
    rejects = Rejects()
    got = [r[4] for r in read_history([p], rejects, not_after=0.0 + 2e9)]
    assert got == [1.0, 5.0]
    assert rejects.counts == {"time in the future": 3}
