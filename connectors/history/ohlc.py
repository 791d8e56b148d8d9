"""Hourly exchange bars through ccxt (async): closes stamped at the bar's END (open + 1 h).

Bars are fetched per UTC month (one cache file per exchange, market, timeframe and month) and
paged with ``since``/``limit`` inside the month. The bar that is still open (its end is after
now) is never kept. Pacing, retries and timeouts are ours, not ccxt's: ccxt's throttle hook calls
the shared :class:`~bot.core.pacing.KeyedPacer` once per HTTP request, and failures are
retried with :func:`~connectors.history.common.with_retries` (:mod:`bot.core.retry`).

Depth of history differs by exchange: Bitstamp serves years of hourly bars by date; **Kraken's
OHLC endpoint serves only its latest 720 bars** whatever ``since`` says (about 30 days of 1 h
bars). Kraken's public trade history, however, goes back to the listing and is paged by time,
so for months older than the OHLC horizon the bars are built from trades (method ``auto``,
the default): close = price of the hour's last trade, hours without a trade are absent, just as
in Kraken's own OHLC. A market can force a method: ``kraken:PAXG/USD@ohlcv`` or ``@trades``.
"""

from __future__ import annotations

import json
import re
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.core.pacing import KeyedPacer
from bot.core.retry import BackoffPolicy
from bot.core.retry_after import parse_retry_after
from connectors.fred_format import SourceFormatError
from connectors.history.common import (
    STATUS_HINTS,
    ChunkCache,
    HistoryDownloadError,
    Progress,
    Row,
    Source,
    SourceContext,
    SourceUnavailable,
    SymbolResult,
    Tally,
    excerpt,
    host_of,
    with_retries,
)


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """Where a symbol's bars come from: a ccxt exchange id and a ccxt unified market."""

    exchange: str
    market: str
    timeframe: str = "1h"
    #: "ohlcv" (the exchange's bars), "trades" (bars built from public trades) or "auto"
    #: (trades where the exchange's bars do not reach back, see TRADES_BEYOND_OHLC_BARS)
    method: str = "auto"

    @classmethod
    def parse(cls, text: str) -> MarketSpec:
        """``EXCHANGE:MARKET[@METHOD]``: ``kraken:PAXG/USD``, ``kraken:PAXG/USD@trades``."""
        exchange, sep, rest = text.partition(":")
        market, _, method = rest.partition("@")
        method = method.strip().lower() or "auto"
        if not sep or not exchange.strip() or "/" not in market or method not in METHODS:
            raise HistoryDownloadError(
                "expected EXCHANGE:MARKET[@ohlcv|@trades|@auto] such as 'kraken:PAXG/USD', "
                f"got {text!r}"
            )
        return cls(exchange.strip().lower(), market.strip(), method=method)

    def __str__(self) -> str:
        return f"{self.exchange} {self.market} {self.timeframe}"


METHODS = ("auto", "ohlcv", "trades")
#: Exchanges whose OHLC endpoint serves only its latest N bars, but whose public trades reach
#: back to the listing: with method "auto", older months are built from trades.
TRADES_BEYOND_OHLC_BARS = {"kraken": 720}
TRADES_PAGE_LIMIT = 1000
MAX_TRADE_PAGES_PER_CHUNK = 5000


#: symbol -> exchange -> the ccxt market that stands for it there (gold: tokenised, PAXG)
EXCHANGE_MARKETS: dict[str, dict[str, str]] = {
    "BTC/USD": {
        "bitstamp": "BTC/USD",
        "kraken": "BTC/USD",
        "coinbase": "BTC/USD",
        "binance": "BTC/USDT",
        "okx": "BTC/USDT",
    },
    "XAU/USD": {"kraken": "PAXG/USD", "binance": "PAXG/USDT", "okx": "PAXG/USDT"},
}

#: "binance GET https://api.binance.com/api/v3/exchangeInfo 451  {...}": ccxt's message of an
#: HTTP error (Exchange.handle_http_status_code: id, method, url, status, reason, body)
_CCXT_STATUS = re.compile(r"^\S+ [A-Z]+ \S+ (\d{3}) ")
#: statuses that no retry changes (ccxt maps 403 and 451 to ExchangeNotAvailable, a
#: NetworkError, which would otherwise be retried)
REFUSED = (401, 403, 404, 410, 451)

#: Bars per request; exchanges not listed get DEFAULT_PAGE_LIMIT.
PAGE_LIMITS = {"kraken": 720, "bitstamp": 1000, "binance": 1000, "bitfinex": 1000, "coinbase": 300}
DEFAULT_PAGE_LIMIT = 500
MAX_PAGES_PER_CHUNK = 64


def _rebase(value: Any, base: str) -> Any:
    """Every URL in ccxt's ``urls['api']`` with its scheme and host replaced by `base`."""
    if isinstance(value, str):
        parts = urlsplit(value)
        return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    if isinstance(value, dict):
        return {k: _rebase(v, base) for k, v in value.items()}
    return value


def _first_url(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for v in value.values():
            u = _first_url(v)
            if u:
                return u
    return None


class ExchangeClient:
    """A ccxt async exchange with our pacing, retries and timeouts; markets load on first use."""

    def __init__(
        self,
        exchange_id: str,
        *,
        base_url: str | None,
        pacer: KeyedPacer,
        policy: BackoffPolicy,
        timeout: float,
        progress: Progress,
    ) -> None:
        self.exchange_id = exchange_id
        self.base_url = base_url
        self.pacer = pacer
        self.policy = policy
        self.timeout = timeout
        self.progress = progress
        self.requests = 0
        self.host = exchange_id
        self._ex: Any = None
        self._markets_loaded = False

    async def __aenter__(self) -> ExchangeClient:
        import ccxt.async_support as ccxt_async

        cls = getattr(ccxt_async, self.exchange_id, None)
        if cls is None or not isinstance(cls, type):
            raise HistoryDownloadError(
                f"unknown exchange {self.exchange_id!r}: use a ccxt exchange id such as "
                "'bitstamp' or 'kraken'"
            )
        ex = cls({"enableRateLimit": True, "timeout": int(self.timeout * 1000)})
        if self.base_url:
            ex.urls["api"] = _rebase(ex.urls["api"], self.base_url)
        self.host = host_of(_first_url(ex.urls.get("api")) or self.exchange_id)

        async def throttle(cost: Any = None) -> None:  # ccxt calls this before every request
            self.requests += 1
            await self.pacer.wait(self.host)

        ex.throttle = throttle
        self._ex = ex
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._ex is not None:
            await self._ex.close()
            self._ex = None

    def timeframe_seconds(self, timeframe: str) -> int:
        import ccxt.async_support as ccxt_async

        try:
            return int(ccxt_async.Exchange.parse_timeframe(timeframe))
        except (ValueError, KeyError, IndexError) as e:
            raise HistoryDownloadError(
                f"{self.exchange_id}: bad timeframe {timeframe!r} (expected e.g. '1h')"
            ) from e

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        import ccxt.async_support as ccxt_async

        ex = self._ex

        def classify(e: BaseException) -> tuple[bool, float | None]:
            if isinstance(e, ccxt_async.NetworkError):  # 429, 5xx, timeouts, connection errors
                if status_of(e) in REFUSED:
                    return False, None
                raw = ex.last_response_headers or {}
                headers = {str(k).lower(): str(v) for k, v in raw.items()}
                return True, parse_retry_after(headers.get("retry-after"))
            return False, None

        try:
            return await with_retries(
                what,
                lambda: fn(*args),
                host=self.host,
                pacer=self.pacer,
                policy=self.policy,
                classify=classify,
                progress=self.progress,
                pace=False,
            )
        except ccxt_async.BaseError as e:
            status = status_of(e)
            if status is not None:
                hint = STATUS_HINTS.get(status, "use another exchange for the symbol")
                body = str(e).split(f" {status} ", 1)[-1]
                raise SourceUnavailable(
                    f"{what}: HTTP {status} ({type(e).__name__}): {excerpt(body)!r}; {hint}",
                    status=status,
                ) from None
            text = excerpt(str(e), 300)
            raise HistoryDownloadError(f"{what}: {type(e).__name__}: {text}") from e

    async def ensure_market(self, spec: MarketSpec) -> None:
        if not self._markets_loaded:
            await self._call(f"{self.exchange_id} markets", self._ex.load_markets)
            self._markets_loaded = True
        if spec.market not in self._ex.markets:
            base = spec.market.split("/")[0]
            near = sorted(m for m in self._ex.markets if str(m).split("/")[0] == base)
            raise HistoryDownloadError(
                f"{self.exchange_id} has no market {spec.market!r}"
                + (f"; it has {', '.join(near[:8])}" if near else "")
            )
        if not self._ex.has.get("fetchOHLCV"):
            raise HistoryDownloadError(f"{self.exchange_id} has no OHLCV history in ccxt")

    async def fetch_trades(self, spec: MarketSpec, since_ms: int) -> list[dict[str, Any]]:
        what = f"{self.exchange_id} {spec.market} trades since {_iso_ms(since_ms)}"
        page = await self._call(
            what, self._ex.fetch_trades, spec.market, since_ms, TRADES_PAGE_LIMIT
        )
        if not isinstance(page, list):
            raise SourceFormatError(f"{what}: expected a list of trades, got {type(page).__name__}")
        return page

    async def fetch_ohlcv(self, spec: MarketSpec, since_ms: int, limit: int) -> list[list[Any]]:
        what = f"{self.exchange_id} {spec.market} bars since {_iso_ms(since_ms)}"
        page = await self._call(
            what, self._ex.fetch_ohlcv, spec.market, spec.timeframe, since_ms, limit
        )
        if not isinstance(page, list):
            raise SourceFormatError(f"{what}: expected a list of bars, got {type(page).__name__}")
        return page


def status_of(e: BaseException) -> int | None:
    """The HTTP status in a ccxt error message, when it carries one."""
    m = _CCXT_STATUS.match(str(e))
    return int(m.group(1)) if m else None


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _month_start(ts: float) -> datetime:
    d = datetime.fromtimestamp(ts, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC)


def _next_month(m: datetime) -> datetime:
    return datetime(m.year + (m.month == 12), m.month % 12 + 1, 1, tzinfo=UTC)


def method_for(spec: MarketSpec, month: datetime, tf: int, now: float) -> str:
    """ "ohlcv" or "trades" for this month of `spec` (resolves "auto")."""
    if spec.method != "auto":
        return spec.method
    depth = TRADES_BEYOND_OHLC_BARS.get(spec.exchange)
    if depth is not None and month.timestamp() < now - (depth - 1) * tf:
        return "trades"
    return "ohlcv"


async def month_bars(
    client: ExchangeClient,
    cache: ChunkCache,
    spec: MarketSpec,
    month: datetime,
    notes: list[str],
    tally: Tally | None = None,
) -> list[list[Any]]:
    """Closed bars opening in `month` (UTC), ``[open_ms, o, h, l, c, v]``, from cache or paged."""
    end = _next_month(month)
    tf = client.timeframe_seconds(spec.timeframe)
    method = method_for(spec, month, tf, _time.time())
    kind = spec.timeframe if method == "ohlcv" else f"{spec.timeframe}-from-trades"
    path = cache.path("ohlc", spec.exchange, spec.market, kind, f"{month:%Y-%m}.json")
    body = await cache.load(path, end.timestamp())
    label = f"{spec.exchange} {spec.market} {month:%Y-%m}" + (
        " (from trades)" if method == "trades" else ""
    )
    if body is not None:
        bars: list[list[Any]] = json.loads(body)["bars"]
        client.progress(f"{label}: {len(bars)} bars (cache)")
        if tally is not None:
            tally.cached += 1
        return bars
    await client.ensure_market(spec)
    if method == "trades":
        bars = await _bars_from_trades(client, spec, month, end, tf, label)
    else:
        bars = await _paged_bars(client, spec, month, end, tf, notes)
    await cache.store(path, json.dumps({"bars": bars}, separators=(",", ":")).encode())
    client.progress(f"{label}: {len(bars)} bars")
    if tally is not None:
        tally.fetched += 1
    return bars


async def _bars_from_trades(
    client: ExchangeClient, spec: MarketSpec, month: datetime, end: datetime, tf: int, label: str
) -> list[list[Any]]:
    """Hourly (tf) OHLCV of the trades in [month, end), paged forward by trade time."""
    tf_ms = tf * 1000
    lo, hi = int(month.timestamp() * 1000), int(end.timestamp() * 1000)
    now_ms = int(_time.time() * 1000)
    seen: set[tuple[Any, ...]] = set()
    bars: dict[int, list[Any]] = {}
    since = lo
    for n in range(MAX_TRADE_PAGES_PER_CHUNK):
        page = await client.fetch_trades(spec, since)
        new = 0
        newest = since
        for t in sorted(page, key=lambda t: int(t.get("timestamp") or 0)):
            ts, price, amount = t.get("timestamp"), t.get("price"), t.get("amount")
            if ts is None or not isinstance(price, int | float) or price <= 0:
                continue
            ts = int(ts)
            key = (t.get("id"), ts, price, amount)
            if key in seen:
                continue
            seen.add(key)
            new += 1
            newest = max(newest, ts)
            if not lo <= ts < hi:
                continue
            open_ms = ts - ts % tf_ms
            if open_ms + tf_ms > now_ms:
                continue  # the hour is not over yet
            vol = float(amount) if isinstance(amount, int | float) else 0.0
            bar = bars.get(open_ms)
            if bar is None:
                bars[open_ms] = [open_ms, price, price, price, price, vol]
            else:
                bar[2], bar[3] = max(bar[2], price), min(bar[3], price)
                bar[4], bar[5] = price, bar[5] + vol
        if not page or newest >= hi or newest >= now_ms:
            break
        if new == 0:  # a full page within one instant: step past it
            since += 1000
            continue
        since = newest  # same-second trades come again and are recognised
        if n and n % 20 == 0:
            client.progress(f"  {label}: trades up to {_iso_ms(newest)}")
    return [bars[k] for k in sorted(bars)]


async def _paged_bars(
    client: ExchangeClient,
    spec: MarketSpec,
    month: datetime,
    end: datetime,
    tf: int,
    notes: list[str],
) -> list[list[Any]]:
    tf_ms = tf * 1000
    lo, hi = int(month.timestamp() * 1000), int(end.timestamp() * 1000)
    now_ms = int(_time.time() * 1000)
    limit = PAGE_LIMITS.get(spec.exchange, DEFAULT_PAGE_LIMIT)
    got: dict[int, list[Any]] = {}
    since = lo
    newest_outside: int | None = None
    for _ in range(MAX_PAGES_PER_CHUNK):
        page = await client.fetch_ohlcv(spec, since, limit)
        opens = [int(b[0]) for b in page if b and b[0] is not None]
        if not opens:
            break
        fresh = [b for b in page if since <= int(b[0]) < hi and int(b[0]) not in got]
        for b in fresh:
            if int(b[0]) + tf_ms <= now_ms:  # the bar still forming is not a close yet
                got[int(b[0])] = list(b[:6])
        if not fresh:
            newest_outside = max(opens)
            break
        if max(opens) >= hi:  # the page already reaches into the next month
            break
        last = max(int(b[0]) for b in fresh)
        if last + tf_ms >= hi or last + tf_ms > now_ms:
            break
        since = last + tf_ms
    bars = [got[k] for k in sorted(got)]
    if not bars and newest_outside is not None and newest_outside >= hi:
        notes.append(
            f"{spec.exchange} returned only bars after {month:%Y-%m} (newest "
            f"{_iso_ms(newest_outside)}): it has no {spec.timeframe} history that far back"
            + (" (Kraken serves only its latest 720 bars)" if spec.exchange == "kraken" else "")
            + "; choose a deeper source with --market"
        )
    return bars


async def fetch_symbol(
    client: ExchangeClient,
    cache: ChunkCache,
    symbol: str,
    spec: MarketSpec,
    window: tuple[float, float],
    *,
    progress: Progress,
    tally: Tally | None = None,
) -> SymbolResult:
    """Closes of `spec` as `symbol`, stamped at bar end, with ts inside `window` (inclusive)."""
    result = SymbolResult(symbol, str(spec))
    tf = client.timeframe_seconds(spec.timeframe)
    lo, hi = window
    now = _time.time()
    month = _month_start(lo - tf)
    last_month = _month_start(min(hi, now) - tf)
    methods: set[str] = set()
    while month <= last_month:
        methods.add(method_for(spec, month, tf, now))
        for b in await month_bars(client, cache, spec, month, result.notes, tally):
            end = int(b[0]) / 1000 + tf
            if not lo <= end <= hi:
                continue
            close = b[4]
            if not isinstance(close, int | float) or close != close or close <= 0:
                result.skipped += 1
                continue
            result.rows.append(Row(end, symbol, float(close)))
        month = _next_month(month)
    if "trades" in methods:
        result.source += " from trades" if methods == {"trades"} else " (partly from trades)"
    if not result.rows and not result.notes:
        result.notes.append(f"{spec} has no bars with ts in the window")
    return result


def exchange_source(exchange: str, markets: dict[str, MarketSpec]) -> Source:
    """A ccxt exchange as a history source for the symbols it has a market for in `markets`
    (symbol -> spec, this exchange's) or :data:`EXCHANGE_MARKETS`."""
    specs = {
        sym: spec
        for sym, spec in {
            **{
                s: MarketSpec(exchange, m[exchange])
                for s, m in EXCHANGE_MARKETS.items()
                if exchange in m
            },
            **markets,
        }.items()
        if spec.exchange == exchange
    }

    async def fetch(ctx: SourceContext, symbols: Sequence[str]) -> dict[str, SymbolResult]:
        out: dict[str, SymbolResult] = {}
        async with ExchangeClient(
            exchange,
            base_url=ctx.base_url or None,
            pacer=ctx.http.pacer,
            policy=ctx.http.policy,
            timeout=ctx.http.timeout,
            progress=ctx.progress,
        ) as client:
            try:
                for symbol in symbols:  # one at a time: ccxt keeps per-instance response state
                    out[symbol] = await fetch_symbol(
                        client,
                        ctx.cache,
                        symbol,
                        specs[symbol],
                        ctx.window,
                        progress=ctx.progress,
                        tally=ctx.tally,
                    )
            finally:
                ctx.http.requests += client.requests
        return out

    return Source(
        name=exchange,
        label=f"{exchange} through ccxt (1h bars)",
        url="",
        symbols=tuple(specs),
        fetch=fetch,
        granularity="1h (close, stamped at the bar end)",
        lag="the bar's end",
        limits="Kraken: latest 720 bars (older months from trades); Binance: 451 from the US",
    )
