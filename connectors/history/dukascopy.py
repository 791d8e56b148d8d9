"""Dukascopy's public historical data feed (keyless bi5 files): hourly FX, metals, index CFDs.

Files (``https://datafeed.dukascopy.com/datafeed``; the month in the path counts from 00 =
January):

* ``{INSTRUMENT}/{YYYY}/{MM}/BID_candles_hour_1.bi5`` -- one month of hourly bid candles;
* ``{INSTRUMENT}/{YYYY}/{MM}/{DD}/BID_candles_min_1.bi5`` -- one day of minute candles (the
  month file of the current month does not exist yet);
* ``{INSTRUMENT}/{YYYY}/{MM}/{DD}/{HH}h_ticks.bi5`` -- one hour of ticks (not used).

A ``.bi5`` is LZMA-compressed ("LZMA compressed data, non-streamed"), then packed big-endian
records; a candle is 24 bytes ``>5i1f``: seconds since the start of the file's period, open,
close, low, high (integers in points), volume (float). Prices are points divided by the
instrument's scale: 100000 for FX, 1000 for JPY pairs, gold, silver and the index CFDs.
During breaks (weekends, holidays, the metals' daily halt) the file repeats the last close
with volume 0; such candles are dropped (they are not prices). An hour without data is an
empty (0-byte) file. Searched and verified against: dukascopy-node (the maintained client,
``src/url-generator`` builds these paths, ``src/decompressor`` unpacks ``>5i1f`` candles and
``>3i2f`` ticks; its h1 test case lists real EURUSD 2019-02 candles with the volume-0 weekend
runs); rosasurfer/mt4-php-tools' format notes (DUKASCOPY_BAR: timeDelta, open, close, low,
high, volume); terrylica/rangebar's endpoint validation (scales 100000 / 1000, 0-based
months, no key, ``cache-control: public``). Reported limits: no documented rate limit; a 429
has been seen on bulk downloads (so requests are paced and retried like every source).
``dukascopy-python`` (PyPI) exists but is synchronous, needs pandas and reads the
``freeserv.dukascopy.com`` JSONP chart API rather than these files; the format is small
enough to read here, against a local server in the tests.

Each close is stamped at the bar's end (open + 1 h, UTC): the value known when the hour is over.
"""

from __future__ import annotations

import lzma
import struct
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial

from connectors.fred_format import SourceFormatError
from connectors.history.common import Source, SourceContext, SymbolResult, keep

DEFAULT_URL = "https://datafeed.dukascopy.com/datafeed"
CANDLE = struct.Struct(">5i1f")
HOUR = 3600

#: symbol -> (Dukascopy instrument, points per unit of price). The scales of USDSEK and
#: JPNIDXJPY follow the pattern of their classes (FX 100000, indices 1000) and were not seen
#: in a recording; :data:`PLAUSIBLE` catches a wrong one instead of writing prices off by 10x.
INSTRUMENTS: dict[str, tuple[str, float]] = {
    "EUR/USD": ("EURUSD", 1e5),
    "GBP/USD": ("GBPUSD", 1e5),
    "USD/CAD": ("USDCAD", 1e5),
    "USD/CHF": ("USDCHF", 1e5),
    "USD/SEK": ("USDSEK", 1e5),
    "USD/JPY": ("USDJPY", 1e3),
    "XAU/USD": ("XAUUSD", 1e3),
    "XAG/USD": ("XAGUSD", 1e3),
    "SPX": ("USA500IDXUSD", 1e3),
    "NDX": ("USATECHIDXUSD", 1e3),
    "N225": ("JPNIDXJPY", 1e3),
}


#: symbol -> (low, high): a decoded close outside this band means a wrong scale or format
PLAUSIBLE: dict[str, tuple[float, float]] = {
    "EUR/USD": (0.5, 2.5),
    "GBP/USD": (0.8, 3.0),
    "USD/CAD": (0.8, 2.5),
    "USD/CHF": (0.4, 2.5),
    "USD/SEK": (4.0, 20.0),
    "USD/JPY": (50.0, 400.0),
    "XAU/USD": (200.0, 20000.0),
    "XAG/USD": (2.0, 500.0),
    "SPX": (300.0, 50000.0),
    "NDX": (500.0, 150000.0),
    "N225": (3000.0, 300000.0),
}


def decode_candles(body: bytes, what: str) -> list[tuple[int, int, int, int, int, float]]:
    """The records of a candle ``.bi5``: (offset s, open, close, low, high, volume)."""
    if not body:
        return []  # no data for the period
    try:
        raw = lzma.decompress(body)
    except (lzma.LZMAError, EOFError) as e:
        raise SourceFormatError(
            f"{what}: not a complete LZMA file ({e}); a truncated download or not a bi5 file"
        ) from e
    if len(raw) % CANDLE.size:
        raise SourceFormatError(
            f"{what}: {len(raw)} bytes is not a whole number of {CANDLE.size}-byte candles"
        )
    return [CANDLE.unpack_from(raw, i) for i in range(0, len(raw), CANDLE.size)]


def hourly_closes(
    records: list[tuple[int, int, int, int, int, float]], start: float, scale: float
) -> dict[float, float]:
    """bar open (epoch s) -> close of each hour that traded, from hour or minute candles
    (minute candles come in time order: the hour's last traded minute gives its close)."""
    out: dict[float, float] = {}
    for offset, _o, close, _lo, _hi, volume in records:
        if volume <= 0:
            continue  # a break: the last close repeated, not a price
        t = start + offset
        out[t - t % HOUR] = close / scale
    return out


def _month_start(t: float) -> datetime:
    d = datetime.fromtimestamp(t, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def _next_month(m: datetime) -> datetime:
    return datetime(m.year + (m.month == 12), m.month % 12 + 1, 1, tzinfo=UTC)


async def _candles(
    ctx: SourceContext, path: str, period_end: float, what: str
) -> list[tuple[int, int, int, int, int, float]]:
    """The decoded candles of one file (a file that does not decode is never cached)."""

    async def get() -> bytes:
        url = f"{ctx.base_url.rstrip('/')}/{path}"
        return await ctx.http.get_bytes(url, {}, what, expect="binary", missing_ok=True)

    key = ("dukascopy", *path.split("/"))
    return await ctx.chunk(key, period_end, what, get, partial(decode_candles, what=what))


async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
    out: dict[str, SymbolResult] = {}
    lo, hi = ctx.window
    last = min(hi, ctx.now)
    for symbol in symbols:
        inst, scale = INSTRUMENTS[symbol]
        result = out[symbol] = SymbolResult(symbol, f"Dukascopy {inst} 1h bid")
        closes: dict[float, float] = {}
        month = _month_start(lo - HOUR)
        while month.timestamp() <= last:
            end = _next_month(month)
            if end.timestamp() <= ctx.now:  # a complete month: its hourly file
                path = f"{inst}/{month.year}/{month.month - 1:02d}/BID_candles_hour_1.bi5"
                what = f"Dukascopy {inst} {month:%Y-%m}"
                records = await _candles(ctx, path, end.timestamp(), what)
                closes.update(hourly_closes(records, month.timestamp(), scale))
            else:  # the current month: one minute file per complete day
                first = datetime.fromtimestamp(lo - HOUR, UTC)
                day = max(month, datetime(first.year, first.month, first.day, tzinfo=UTC))
                while (day + timedelta(days=1)).timestamp() <= min(ctx.now, end.timestamp()):
                    folder = f"{inst}/{day.year}/{day.month - 1:02d}/{day.day:02d}"
                    path = f"{folder}/BID_candles_min_1.bi5"
                    what = f"Dukascopy {inst} {day:%Y-%m-%d}"
                    day_end = (day + timedelta(days=1)).timestamp()
                    records = await _candles(ctx, path, day_end, what)
                    closes.update(hourly_closes(records, day.timestamp(), scale))
                    day += timedelta(days=1)
                if not result.notes:
                    result.notes.append(
                        "Dukascopy hours of today come from the live feeds (day files only "
                        "exist once the day is over)"
                    )
            month = end
        lo_ok, hi_ok = PLAUSIBLE[symbol]
        odd = [v for v in closes.values() if not lo_ok <= v <= hi_ok]
        if odd:
            raise SourceFormatError(
                f"Dukascopy {inst}: {len(odd)} closes outside {lo_ok:g}..{hi_ok:g} (e.g. "
                f"{odd[0]:g}): the price scale {scale:g} looks wrong for this instrument"
            )
        for opened in sorted(closes):
            keep(result, opened + HOUR, closes[opened], ctx.window, ctx.now)
    return out


SOURCE = Source(
    name="dukascopy",
    label="Dukascopy historical data feed (bi5 candles)",
    url=DEFAULT_URL,
    symbols=tuple(INSTRUMENTS),
    fetch=fetch,
    granularity="1h (bid close, stamped at the bar end)",
    lag="complete days only (the current day from the live feeds)",
    limits="one file per instrument and month (current month: per day); no key; CFD prices",
)
