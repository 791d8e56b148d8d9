"""Must-show of issue 9: keyless history that works without FRED's CSV and without Binance.

Local servers answer in each source's real format with values derived, here and now, from the
reference episode (``../shared/data/history/episode-312.csv``); FRED's CSV answers 403 and
Binance 451, as they do today. ``stressbot history download`` (the real CLI handler) for
2020-02-20..2020-04-10 then builds a replay file on which ``liquidity_crisis`` fires in
2020-03-09..2020-03-20, ``funding_stress`` has IORB and ``session_dollar`` has intraday FX;
and the first-start backfill fills every source but the one that fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.cli.history import register
from bot.core.models import AlertKind, iso_utc, parse_iso_utc
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import load_config
from bot.runtime.ruletest import run_in_memory
from bot.store.redis_store import Store
from connectors.config import BackfillConfig
from connectors.history.backfill import Backfill
from connectors.history.file import Rejects
from tests.conftest import shared_path
from tests.fake_history_servers import FRED_403, FakeFred, FakeServer
from tests.fake_history_sources import (
    Episode,
    FakeBinance,
    FakeDukascopy,
    FakeEcb,
    FakeFrb,
    FakeNyFed,
    FakeTreasury,
    FakeYahoo,
    kraken_with_btc_trades,
)

EPISODE = ("data", "history", "episode-312.csv")
FX = ("EUR/USD", "USD/JPY", "GBP/USD", "USD/CAD", "USD/CHF", "USD/SEK")


@dataclass
class Servers:
    episode: Episode
    fred: FakeFred
    binance: FakeBinance
    treasury: FakeTreasury
    nyfed: FakeNyFed
    frb: FakeFrb
    ecb: FakeEcb
    dukascopy: FakeDukascopy
    yahoo: FakeYahoo
    kraken: FakeServer

    def urls(self) -> dict[str, str]:
        return {
            "fred_csv": self.fred.endpoint,
            "binance": self.binance.url,
            "bitstamp": self.binance.url,  # refuses as Binance does: BTC/USD goes on to Kraken
            "coinbase": self.binance.url,
            "kraken": self.kraken.url,
            "treasury": self.treasury.url,
            "nyfed": self.nyfed.url,
            "frb": self.frb.endpoint,
            "frb_h10": self.frb.endpoint,
            "ecb": self.ecb.url + "/service/data/EXR",
            "dukascopy": self.dukascopy.url,
            "yahoo": self.yahoo.url,
        }

    def all(self) -> Iterator[FakeServer]:
        yield from (
            self.fred,
            self.binance,
            self.treasury,
            self.nyfed,
            self.frb,
            self.ecb,
            self.dukascopy,
            self.yahoo,
            self.kraken,
        )


@contextlib.asynccontextmanager
async def serving(episode: Episode, dukascopy: set[str] | None = None) -> AsyncIterator[Servers]:
    """Every source on a loopback port; FRED's CSV answers 403, Binance 451. Dukascopy serves
    no USDSEK (as if it had none), so USD/SEK falls back to the ECB."""
    if dukascopy is None:
        dukascopy = set(FakeDukascopy.INSTRUMENTS)
    fred = FakeFred()
    fred.always = FRED_403
    srv = Servers(
        episode,
        fred,
        FakeBinance(),
        FakeTreasury(episode),
        FakeNyFed(episode),
        FakeFrb(episode),
        FakeEcb(episode),
        FakeDukascopy(episode, dukascopy),
        FakeYahoo(episode),
        kraken_with_btc_trades(episode),
    )
    started: list[FakeServer] = []
    try:
        for s in srv.all():
            await s.start()
            started.append(s)
        yield srv
    finally:
        for s in started:
            await s.stop()


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)  # no keyed source joins the orders


@pytest.fixture(scope="module")
def episode() -> Episode:
    return Episode(shared_path(*EPISODE))


def cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stressbot")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def rows_of(path: Path) -> list[tuple[float, str, float]]:
    out = []
    for line in path.read_text().splitlines()[1:]:
        ts, sym, v = line.split(",")
        out.append((parse_iso_utc(ts), sym, float(v)))
    return out


async def test_history_download_builds_an_episode_on_which_the_rules_work(
    episode: Episode, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "march2020.csv"
    async with serving(episode) as srv:
        argv = ["history", "download", "--from", "2020-02-20", "--to", "2020-04-10"]
        argv += ["--out", str(out), "--cache", str(tmp_path / "cache"), "--min-interval", "0"]
        argv += ["--retries", "1", "--timeout", "10"]
        # FRED's CSV first for IORB and SPX, Binance first for BTC: all three must fall back
        argv += ["--source", "IORB=fred_csv,frb", "--source", "SPX=fred_csv,yahoo"]
        argv += ["--source", "BTC/USD=binance,kraken"]
        for name, url in srv.urls().items():
            argv += ["--source-url", f"{name}={url}"]
        args = cli(argv)

        code = await args.handler(args)

        assert srv.fred.requests and srv.binance.requests  # both were asked, and refused
    printed = capsys.readouterr()
    assert code == 0, printed.out + printed.err
    table = printed.out
    assert "fred_csv" in table and "HTTP 403" in table and "FAILED" in table
    assert "binance" in table and "451" in table
    rows = rows_of(out)
    by_symbol = Counter(sym for _, sym, _ in rows)
    assert set(by_symbol) == set(episode.rows), by_symbol  # every symbol, from some source

    # funding_stress has IORB (from the Board's PRATES, the FRED CSV having refused)
    iorb = [v for _, s, v in rows if s == "IORB"]
    assert iorb and set(iorb) <= {1.1, 1.6, 0.1}
    # session_dollar has intraday FX: hourly bars from Dukascopy for the five hourly legs
    for pair in ("EUR/USD", "USD/JPY", "GBP/USD", "USD/CAD", "USD/CHF"):
        day = [t for t, s, _ in rows if s == pair and iso_utc(t).startswith("2020-03-10")]
        assert len(day) >= 20, (pair, len(day))
    assert by_symbol["USD/SEK"] < 60  # daily, from the ECB (Dukascopy had no USDSEK)

    # the engine's liquidity_crisis fires in the window, on the downloaded file alone
    config = load_config(None)
    rules = load_rules(default_rules_dir(), config.sessions)
    rejects = Rejects()
    alerts = await asyncio.to_thread(run_in_memory, rules, config, [out], rejects)
    assert rejects.total == 0, rejects.examples
    firing = [a for a in alerts if a.kind is AlertKind.FIRING]
    crisis = [iso_utc(a.ts) for a in firing if a.rule == "liquidity_crisis"]
    assert any("2020-03-09" <= t[:10] <= "2020-03-20" for t in crisis), crisis


async def test_backfill_fills_every_source_but_the_failing_one(
    episode: Episode, store: Store, tmp_path: Path
) -> None:
    now = datetime(2020, 3, 20, 23, 0, tzinfo=UTC).timestamp()
    async with serving(episode) as srv:
        srv.yahoo.always = FRED_403  # Yahoo refuses too: SPX, NDX, N225 go to Dukascopy
        cfg = BackfillConfig(days=10, timeout=60.0)
        urls = srv.urls()
        bf = Backfill(
            cfg, store, clock=lambda: now, source_urls=urls, cache_dir=tmp_path, min_interval=0
        )
        await bf.run(asyncio.Event())

    ticks = [t for _, t in await store.read_ticks("0-0", count=100_000)]
    got = {t.symbol for t in ticks}
    assert bf.written == len(ticks) > 0
    assert "yahoo" in bf.failed and "403" in bf.failed["yahoo"]
    assert {"SPX", "NDX", "N225"} <= got  # from Dukascopy's index CFDs
    assert {"VIX", "DXY"}.isdisjoint(got)  # Yahoo only: missing, nothing else
    assert {"US10Y", "SOFR", "IORB", "XAU/USD", "BTC/USD", *FX} <= got
    assert all(t.ts <= now for t in ticks)
