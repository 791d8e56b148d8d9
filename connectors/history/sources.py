"""Every history source, and each symbol's source order: the default keyless source first.

A symbol is downloaded from the first source of its order; when that source fails (refused,
unreachable, an answer in the wrong format) or has no value in the window, the next one is
asked, and so on. Each symbol comes whole from one source, so a file never mixes the hourly
and daily granularity of one symbol. The orders (:data:`DEFAULT_ORDER`) put the keyless
sources a user anywhere can reach first; ``FRED_API_KEY`` adds the FRED API at the end of
the orders of the symbols FRED has; FRED's keyless ``fredgraph.csv`` (403 to programmatic
clients since about 2026-05-30) is only used when asked for (``--source SYMBOL=fred_csv``).
A name that is not a source here is taken as a ccxt exchange id (``bitstamp``, ``kraken``,
``coinbase``, ``binance``, ``okx``; markets from :data:`ohlc.EXCHANGE_MARKETS` or
``--market``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from connectors.history import dukascopy, ecb, frb, fred_api, fred_csv, nyfed, ohlc, treasury, yahoo
from connectors.history.common import HistoryDownloadError, Source
from connectors.history.ohlc import MarketSpec

SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        treasury.SOURCE,
        nyfed.SOURCE,
        frb.SOURCE,
        frb.H10_SOURCE,
        ecb.SOURCE,
        dukascopy.SOURCE,
        yahoo.SOURCE,
        fred_api.SOURCE,
        fred_csv.SOURCE,
    )
}

_FX = ("dukascopy", "ecb", "frb_h10")

#: symbol -> its keyless sources, best first
DEFAULT_ORDER: dict[str, tuple[str, ...]] = {
    "BTC/USD": ("bitstamp", "kraken", "coinbase"),
    "XAU/USD": ("dukascopy", "kraken"),
    "XAG/USD": ("dukascopy",),
    "EUR/USD": _FX,
    "USD/JPY": _FX,
    "GBP/USD": _FX,
    "USD/CAD": _FX,
    "USD/CHF": _FX,
    "USD/SEK": _FX,
    "DXY": ("yahoo",),
    "US2Y": ("treasury",),
    "US10Y": ("treasury",),
    "US30Y": ("treasury",),
    "SOFR": ("nyfed",),
    "IORB": ("frb",),
    "SPX": ("yahoo", "dukascopy"),
    "NDX": ("yahoo", "dukascopy"),
    "N225": ("yahoo", "dukascopy"),
    "VIX": ("yahoo",),
}


def fred_key_set() -> bool:
    return bool(os.environ.get(fred_api.KEY_ENV, "").strip())


def source_order(
    symbol: str,
    overrides: Mapping[str, Sequence[str]],
    markets: Mapping[str, MarketSpec],
    *,
    fred_key: bool,
) -> list[str]:
    """The sources to try for `symbol`, in order."""
    if symbol in overrides:
        return list(dict.fromkeys(overrides[symbol]))
    if symbol in markets:  # an explicit exchange market is the one source asked for
        return [markets[symbol].exchange]
    order = list(DEFAULT_ORDER.get(symbol, ()))
    if fred_key and symbol in fred_csv.FRED_SYMBOLS:
        order.append(fred_api.SOURCE.name)
    return order


def source_named(name: str, markets: Mapping[str, MarketSpec]) -> Source:
    """The source called `name` (a ccxt exchange id when it is none of :data:`SOURCES`)."""
    if name in SOURCES:
        return SOURCES[name]
    return ohlc.exchange_source(name, {s: m for s, m in markets.items() if m.exchange == name})


def supported_symbols() -> list[str]:
    return sorted(DEFAULT_ORDER)


def check_order(symbol: str, order: Sequence[str], markets: Mapping[str, MarketSpec]) -> None:
    """Raise when a source of `order` cannot serve `symbol` (a typo in --source)."""
    for name in order:
        src = source_named(name, markets)
        if symbol not in src.symbols:
            known = sorted(n for n, s in SOURCES.items() if symbol in s.symbols)
            raise HistoryDownloadError(
                f"--source {symbol}: {name!r} has no {symbol} (sources for it: "
                f"{', '.join(known) or 'exchanges via ccxt'}; an exchange needs --market "
                f"{symbol}=EXCHANGE:MARKET when it is not one of "
                f"{', '.join(sorted(ohlc.EXCHANGE_MARKETS.get(symbol, {})))})"
            )
