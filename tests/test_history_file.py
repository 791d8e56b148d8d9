"""Reading replay files: bad rows are counted with where and why, never fatal."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from connectors.history.file import HistoryFileError, Rejects, read_history

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
