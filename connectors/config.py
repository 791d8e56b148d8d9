"""Configuration of the live feeds: the `[feeds]` table of the config file.

Each feed is a named table under ``[feeds.sources.<name>]`` with a ``kind``::

    [feeds.sources.okx]
    kind = "ccxt"                      # streamed through ccxt.pro
    exchange = "okx"
    symbols = { "BTC/USDT" = "BTC/USD" }   # exchange market symbol -> canonical symbol

Several feeds may deliver the same canonical symbol; ``[feeds.combine."BTC/USD"]`` says how
they are combined (median of the live sources, or the first live one in a priority list).
Every endpoint URL is a setting, so a feed can point at a testnet, a mirror, a proxy or a
local fake server. Secrets (API keys, tokens) are never in this file: a feed names the
environment variable that holds them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bot.core.config_types import Zone
from bot.core.durations import parse_duration
from bot.core.models import INPUT_SYMBOLS
from connectors.publication import StampName


def _seconds(v: Any) -> float:
    """A duration in seconds: a number, or a string such as '250ms', '30s', '15m', '4h'.

    Like bot.core.config_types.Duration, plus milliseconds (batch flush intervals are a few ms).
    """
    if isinstance(v, bool):
        raise ValueError("expected a duration such as '30s' or '250ms', got a boolean")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError("expected a duration of zero or more seconds")
        return float(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s.endswith("ms"):
            try:
                ms = float(s[:-2])
            except ValueError:
                raise ValueError(f"expected a duration like '250ms', got {v!r}") from None
            if ms < 0:
                raise ValueError("expected a duration of zero or more seconds")
            return ms / 1000.0
        return parse_duration(s)
    raise ValueError(f"expected a duration like '30s' or '250ms', got {type(v).__name__}")


Seconds = Annotated[float, BeforeValidator(_seconds)]


def _canonical(v: Any) -> str:
    if not isinstance(v, str) or v not in INPUT_SYMBOLS:
        known = ", ".join(INPUT_SYMBOLS)
        raise ValueError(f"unknown canonical symbol {v!r}; expected one of: {known}")
    return v


Canonical = Annotated[str, BeforeValidator(_canonical)]

#: When a market trades. "always": 24x7 (crypto venues, tokenised gold); "fx": Sunday 17:00 to
#: Friday 17:00 New York; "metals": the FX week with the daily 17:00-18:00 New York halt.
Schedule = Literal["always", "fx", "metals"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffConfig(Strict):
    """Reconnect/retry delays: initial * multiplier**n, capped at `max`, with full jitter."""

    initial: Seconds = 1.0
    max: Seconds = 60.0
    multiplier: float = Field(default=2.0, ge=1.0)
    jitter: float = Field(default=0.5, ge=0.0, le=1.0)  # fraction of the delay randomised
    reset_after: Seconds = 60.0  # a connection healthy this long resets the backoff


class MarketHoursConfig(Strict):
    zone: Zone = "America/New_York"
    # Dates when FX and spot gold do not trade, as "MM-DD" (every year) or "YYYY-MM-DD".
    holidays: list[str] = Field(default_factory=lambda: ["12-25", "01-01"])
    # After a market opens, a feed gets this long to deliver its first tick before it is stale.
    open_grace: Seconds = 300.0


class BaseFeedConfig(Strict):
    """What every feed has: its symbols, tick validation limits and a request timeout."""

    enabled: bool = True
    symbols: dict[str, Canonical] = Field(
        default_factory=dict, description="venue symbol -> canonical symbol"
    )
    # Validation: ticks stamped further in the future / past than this are dropped.
    max_future: Seconds = 10.0
    max_past: Seconds = 300.0  # 0 disables the check
    timeout: Seconds = 10.0  # connect / request timeout

    @model_validator(mode="after")
    def _has_symbols(self) -> BaseFeedConfig:
        if self.enabled and not self.symbols:
            raise ValueError("symbols: a feed needs at least one 'venue symbol = canonical' pair")
        return self


class StreamFeedConfig(BaseFeedConfig):
    """What every streamed feed has (read by `connectors.base.StreamFeed`)."""

    # When the venue's market is open (the watchdog only counts silence while it is).
    schedule: Schedule = "always"
    # Seconds without a tick while the market is open before the feed is stale (and is
    # reconnected). Default: feeds.stale_after.
    stale_after: Seconds | None = None


class CcxtFeedConfig(StreamFeedConfig):
    """A keyless public stream through ccxt.pro (watchTicker / watchTrades)."""

    kind: Literal["ccxt"]
    exchange: str  # ccxt id: okx, binance, coinbaseexchange, kraken, bitstamp, ...
    method: Literal["ticker", "trades"] = "ticker"
    price: Literal["last", "mid"] = "last"
    # Deep-merged into the exchange's `urls` (e.g. {api = {ws = "wss://...", rest = "..."}}).
    urls: dict[str, Any] = Field(default_factory=dict)
    # Merged into the exchange's `options` (e.g. {fetchMarkets = {types = ["spot"]}}).
    options: dict[str, Any] = Field(default_factory=dict)


class KrakenFeedConfig(StreamFeedConfig):
    """Kraken's native public websocket (v1), read with websockets + orjson."""

    kind: Literal["kraken"]
    url: str = "wss://ws.kraken.com"
    channel: Literal["ticker", "trade"] = "ticker"
    price: Literal["last", "mid"] = "last"  # ticker only: last trade or bid/ask mid


class OandaFeedConfig(StreamFeedConfig):
    """OANDA v20 pricing stream (HTTP chunked, one JSON object per line), needs a token."""

    kind: Literal["oanda"]
    url: str = "https://stream-fxpractice.oanda.com"  # live: https://stream-fxtrade.oanda.com
    # REST host of the account instruments check (GET /v3/accounts/{id}/instruments). Default:
    # `url` with "stream-" changed to "api-" (https://api-fxpractice.oanda.com), else `url`.
    api_url: str | None = None
    # Check each instrument at start; ones the account cannot trade are reported and skipped
    # (one unavailable instrument makes the whole pricing stream request fail).
    validate_instruments: bool = True
    token_env: str = "OANDA_API_TOKEN"
    account_env: str = "OANDA_ACCOUNT_ID"
    schedule: Schedule = "fx"  # XAU/XAG follow "metals" automatically
    # OANDA sends a heartbeat every 5 s; a silence this long is a stall even when closed.
    heartbeat_timeout: Seconds = 20.0


class PolledFeedConfig(BaseFeedConfig):
    """What every polled feed has (read by `connectors.base.PolledFeed` and `http_poll`)."""

    interval: Seconds = 900.0  # between polls; retries after errors use the backoff
    # Publication schedule: once the newest value that can have been published is in, the
    # next poll waits for the next publication time (plus a minute), up to max_idle. While a
    # value is due (or late, or on a holiday) the feed polls every `interval`.
    max_idle: Seconds = 6 * 3600.0
    max_past: Seconds = 14 * 86400.0
    # Observations to ask for / keep per poll (the newest ones).
    lookback: int = Field(default=5, ge=1, le=100)


class NyFedFeedConfig(PolledFeedConfig):
    """New York Fed Markets API, keyless JSON (SOFR and other reference rates)."""

    kind: Literal["nyfed"]
    # {n} is replaced by `lookback`.
    url: str = "https://markets.newyorkfed.org/api/rates/secured/sofr/last/{n}.json"
    symbols: dict[str, Canonical] = Field(default_factory=lambda: {"SOFR": "SOFR"})
    stamp: StampName = "next_morning"


class FredFeedConfig(PolledFeedConfig):
    """FRED `series/observations` (JSON), needs an API key from the environment."""

    kind: Literal["fred"]
    url: str = "https://api.stlouisfed.org/fred/series/observations"
    key_env: str = "FRED_API_KEY"
    interval: Seconds = 3600.0
    # series id -> stamp; default by canonical symbol (yields "close", SOFR "next_morning",
    # IORB "effective").
    stamps: dict[str, StampName] = Field(default_factory=dict)


class FredCsvFeedConfig(PolledFeedConfig):
    """FRED's keyless CSV download (`fredgraph.csv`): daily series without an API key."""

    kind: Literal["fred_csv"]
    url: str = "https://fred.stlouisfed.org/graph/fredgraph.csv"
    interval: Seconds = 3600.0
    # series id -> stamp; default by canonical symbol (as for `fred`).
    stamps: dict[str, StampName] = Field(default_factory=dict)


class BoardDdpFeedConfig(PolledFeedConfig):
    """The Federal Reserve Board's Data Download Program: a keyless CSV package (IORB)."""

    kind: Literal["board_ddp"]
    url: str = "https://www.federalreserve.gov/datadownload/Output.aspx"
    release: str = "PRATES"  # the DDP release (rel=)
    # The package id (series=) of the release's preformatted package: PRATES policy rates.
    package: str = "c27939ee810cb2e929a920a6bd77d9f6"
    interval: Seconds = 3600.0
    symbols: dict[str, Canonical] = Field(default_factory=lambda: {"RESBM_N.D": "IORB"})
    # series code -> stamp; default by canonical symbol (IORB "effective").
    stamps: dict[str, StampName] = Field(default_factory=dict)


class TreasuryFeedConfig(PolledFeedConfig):
    """US Treasury daily par yield curve, keyless Atom/XML feed (one month per request)."""

    kind: Literal["treasury"]
    # {yyyymm} is replaced by the month asked for (this month and, early on, the previous one).
    url: str = (
        "https://home.treasury.gov/resource-center/data-chart-center/interest-rates/pages/xml"
        "?data=daily_treasury_yield_curve&field_tdr_date_value_month={yyyymm}"
    )
    symbols: dict[str, Canonical] = Field(
        default_factory=lambda: {"BC_2YEAR": "US2Y", "BC_10YEAR": "US10Y", "BC_30YEAR": "US30Y"}
    )
    interval: Seconds = 1800.0


class YahooFeedConfig(PolledFeedConfig):
    """Yahoo Finance chart API, keyless JSON: the latest index levels (delayed as Yahoo shows
    them; each value is stamped with Yahoo's own quote time, so a delay is never look-ahead)."""

    kind: Literal["yahoo"]
    url: str = "https://query2.finance.yahoo.com/v8/finance/chart/{ticker}"
    interval: Seconds = 60.0
    max_past: Seconds = 4 * 86400.0  # the last close stays valid over a weekend
    symbols: dict[str, Canonical] = Field(
        default_factory=lambda: {
            "^GSPC": "SPX",
            "^NDX": "NDX",
            "^N225": "N225",
            "^VIX": "VIX",
            "DX-Y.NYB": "DXY",
        }
    )


FeedConfig = Annotated[
    CcxtFeedConfig
    | KrakenFeedConfig
    | OandaFeedConfig
    | NyFedFeedConfig
    | FredFeedConfig
    | FredCsvFeedConfig
    | BoardDdpFeedConfig
    | TreasuryFeedConfig
    | YahooFeedConfig,
    Field(discriminator="kind"),
]


class CombineConfig(Strict):
    """How several feeds of one canonical symbol become one series."""

    # "median": median of the sources that ticked within max_age;
    # "failover": the first source in `sources` order that is live.
    mode: Literal["median", "failover"] = "median"
    sources: list[str] = Field(default_factory=list, description="feed names; default: all")
    max_age: Seconds = 30.0  # a source silent longer than this is not live


class BackfillConfig(Strict):
    """First start only (no engine checkpoint yet): the last `days` of keyless public history
    (FRED CSV, exchange OHLC through ccxt) are written to the tick stream, so rules with
    multi-day windows work at once instead of days later. History before the start only warms
    the windows; it raises no alerts. 0 days disables it."""

    days: int = Field(default=10, ge=0, le=90)
    symbols: list[Canonical] = Field(default_factory=list)  # empty: every keyless symbol
    fred_url: str = "https://fred.stlouisfed.org/graph/fredgraph.csv"
    # history source name (or ccxt exchange id) -> base URL, for mirrors and test servers
    exchange_urls: dict[str, str] = Field(default_factory=dict)
    timeout: Seconds = 900.0  # the whole download; what is fetched by then is kept


class FeedsConfig(Strict):
    enabled: bool = True
    # Ticks are written to Redis when this many are buffered, or every flush_interval.
    batch_size: int = Field(default=1000, ge=1)
    flush_interval: Seconds = 0.005
    # Ticks held while Redis is unreachable; beyond this the oldest are dropped (and counted).
    max_buffer: int = Field(default=200_000, ge=1)
    # Conflation: at most one tick per symbol per this interval goes to Redis (the newest; a
    # held tick is written when the interval has passed). 0 writes every accepted tick.
    conflate: Seconds = 0.0
    status_interval: Seconds = 2.0  # health records are rewritten this often (and on changes)
    stale_after: Seconds = 60.0  # default watchdog for streams
    # A source that refuses this location (HTTP 451/403) is tried again only this often.
    unavailable_retry: Seconds = 3600.0
    backoff: BackoffConfig = BackoffConfig()
    market_hours: MarketHoursConfig = MarketHoursConfig()
    backfill: BackfillConfig = BackfillConfig()
    sources: dict[str, FeedConfig] = Field(default_factory=dict)
    combine: dict[Canonical, CombineConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check_combine(self) -> FeedsConfig:
        for name in self.sources:
            if not name or any(c.isspace() for c in name):
                raise ValueError(f"sources: feed name {name!r} must be a word without spaces")
        for sym, comb in self.combine.items():
            for src in comb.sources:
                feed = self.sources.get(src)
                if feed is None:
                    raise ValueError(f"combine.{sym}: unknown feed {src!r} in sources")
                if sym not in feed.symbols.values():
                    raise ValueError(f"combine.{sym}: feed {src!r} does not deliver {sym}")
        return self

    def enabled_sources(self) -> dict[str, FeedConfig]:
        return {n: f for n, f in self.sources.items() if f.enabled}
