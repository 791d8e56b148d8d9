"""Local stand-ins (127.0.0.1) for the keyless history sources, in each source's real format.

Every server serves values derived at test time from a replay file (the reference
``../shared/data/history/episode-312.csv``): :class:`Episode` holds its rows by symbol, and each
fake re-publishes them the way its source publishes (Treasury's yearly CSV with MM/DD/YYYY
dates, the NY Fed's refRates JSON, the Board's DDP CSV with its label rows, the ECB's EXR
csvdata per euro, Dukascopy's LZMA bi5 candles with volume-0 weekend runs, Yahoo's v8 chart
JSON, Kraken's public trades, Binance's 451). Nothing derived is written to the repository.
Failure modes come from :class:`tests.fake_history_servers.FakeServer` (``fail_next``,
``always``).
"""

from __future__ import annotations

import csv
import io
import lzma
import struct
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from tests.fake_history_servers import FakeKraken, FakeServer

NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")
BERLIN = ZoneInfo("Europe/Berlin")


class Episode:
    """A replay file's rows by symbol: symbol -> [(ts, value)] in time order."""

    def __init__(self, path: Path) -> None:
        self.rows: dict[str, list[tuple[float, float]]] = defaultdict(list)
        with path.open() as fh:
            next(fh)
            for line in fh:
                ts, sym, value = line.rstrip("\n").split(",")
                t = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
                self.rows[sym].append((t, float(value)))

    def daily(self, symbol: str, zone: ZoneInfo = NEW_YORK) -> dict[date, float]:
        """The symbol's values by the local date of their ts."""
        return {datetime.fromtimestamp(t, zone).date(): v for t, v in self.rows[symbol]}

    def at_or_before(self, symbol: str, t: float) -> float | None:
        best = None
        for ts, v in self.rows[symbol]:
            if ts > t:
                break
            best = v
        return best


# --------------------------------------------------------------------------- Treasury


class FakeTreasury(FakeServer):
    """``GET /{year}/all?type=daily_treasury_yield_curve&...&_format=csv`` (newest row first)."""

    TENORS: ClassVar[dict[str, Any]] = {"2 Yr": "US2Y", "10 Yr": "US10Y", "30 Yr": "US30Y"}

    def __init__(self, episode: Episode) -> None:
        super().__init__()
        self.episode = episode
        self.app.router.add_get("/{year}/all", self._csv)

    async def _csv(self, request: web.Request) -> web.Response:
        year = int(request.match_info["year"])
        assert request.query["type"] == "daily_treasury_yield_curve"
        assert request.query["_format"] == "csv"
        cols = {h: self.episode.daily(s) for h, s in self.TENORS.items()}
        dates = sorted({d for c in cols.values() for d in c if d.year == year}, reverse=True)
        head = ["1 Mo", "2 Mo", "3 Mo", "6 Mo", "1 Yr", "2 Yr", "3 Yr", "5 Yr", "7 Yr", "10 Yr"]
        head += ["20 Yr", "30 Yr"]
        out = io.StringIO()
        w = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        out.write("Date," + ",".join(f'"{h}"' for h in head) + "\r\n")
        for d in dates:
            row = [f"{d:%m/%d/%Y}"]
            for h in head:
                v = cols[h].get(d) if h in cols else 1.0
                row.append("" if v is None else f"{v:.2f}")
            w.writerow(row)
        return web.Response(text=out.getvalue(), content_type="text/csv")


# --------------------------------------------------------------------------- NY Fed


def _prev_weekday(d: date) -> date:
    d -= timedelta(days=1)
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


class FakeNyFed(FakeServer):
    """``GET /api/rates/secured/sofr/search.json?startDate=&endDate=`` (newest first)."""

    def __init__(self, episode: Episode) -> None:
        super().__init__()
        self.episode = episode
        self.app.router.add_get("/api/rates/secured/sofr/search.json", self._sofr)

    async def _sofr(self, request: web.Request) -> web.Response:
        lo = date.fromisoformat(request.query["startDate"])
        hi = date.fromisoformat(request.query["endDate"])
        rows = []
        for t, v in self.episode.rows["SOFR"]:  # ts = 08:00 New York on the publication day
            d = _prev_weekday(datetime.fromtimestamp(t, NEW_YORK).date())
            if lo <= d <= hi:
                rows.append(
                    {
                        "effectiveDate": d.isoformat(),
                        "type": "SOFR",
                        "percentRate": v,
                        "volumeInBillions": 1000,
                        "revisionIndicator": "",
                    }
                )
        rows.sort(key=lambda r: str(r["effectiveDate"]), reverse=True)
        return web.json_response({"refRates": rows})


# --------------------------------------------------------------------------- FRB DDP


class FakeFrb(FakeServer):
    """``GET /datadownload/Output.aspx?rel=PRATES|H10&...&filetype=csv`` in DDP's CSV shape."""

    PATH = "/datadownload/Output.aspx"
    H10: ClassVar[dict[str, Any]] = {
        "RXI$US_N.B.EU": ("EUR/USD", False),
        "RXI_N.B.JA": ("USD/JPY", False),
        "RXI$US_N.B.UK": ("GBP/USD", False),
        "RXI_N.B.CA": ("USD/CAD", False),
        "RXI_N.B.SZ": ("USD/CHF", False),
        "RXI_N.B.SD": ("USD/SEK", False),
    }

    def __init__(self, episode: Episode) -> None:
        super().__init__()
        self.episode = episode
        self.app.router.add_get(self.PATH, self._csv)

    @property
    def endpoint(self) -> str:
        return self.url + self.PATH

    async def _csv(self, request: web.Request) -> web.Response:
        q = request.query
        assert q["filetype"] == "csv" and q["label"] == "include"
        lo = datetime.strptime(q["from"], "%m/%d/%Y").date()
        hi = datetime.strptime(q["to"], "%m/%d/%Y").date()
        if q["rel"] == "PRATES":
            codes = ["RESBME_N.D", "RESBMS_N.D", "RESBM_N.D"]
            iorb = self.episode.daily("IORB")
            table = {
                d: [
                    f"{v:g}" if d < date(2021, 7, 29) else "",
                    "",
                    f"{v:g}" if d >= date(2021, 7, 29) else "",
                ]
                for d, v in iorb.items()
            }
        else:
            codes = list(self.H10)
            table = {}
            d = lo
            while d <= hi:
                if d.weekday() < 5:
                    noon = datetime(d.year, d.month, d.day, 12, tzinfo=NEW_YORK).timestamp()
                    row = []
                    for code in codes:
                        v = self.episode.at_or_before(self.H10[code][0], noon)
                        row.append("ND" if v is None else f"{v:.4f}")
                    table[d] = row
                d += timedelta(days=1)
        out = io.StringIO()
        w = csv.writer(out, quoting=csv.QUOTE_NONNUMERIC, lineterminator="\r\n")
        w.writerow(["Series Description", *(f"Series {c}" for c in codes)])
        w.writerow(["Unit:", *(["Percent"] * len(codes))])
        w.writerow(["Multiplier:", *(["1"] * len(codes))])
        w.writerow(["Currency:", *(["NA"] * len(codes))])
        w.writerow(["Unique Identifier: ", *(f"{q['rel']}/{c}" for c in codes)])
        w.writerow(["Time Period", *codes])
        plain = csv.writer(out, lineterminator="\r\n")
        for d in sorted(table):
            if lo <= d <= hi:
                plain.writerow([d.isoformat(), *table[d]])
        return web.Response(text=out.getvalue(), content_type="text/csv")


# --------------------------------------------------------------------------- ECB


class FakeEcb(FakeServer):
    """``GET /service/data/EXR/D.USD+JPY+...EUR.SP00.A?startPeriod&endPeriod&format=csvdata``:
    units per euro at 14:15 Frankfurt, derived from the hourly pairs (SEK from USD/SEK)."""

    VIA: ClassVar[dict[str, Any]] = {
        "JPY": "USD/JPY",
        "CAD": "USD/CAD",
        "CHF": "USD/CHF",
        "SEK": "USD/SEK",
    }

    def __init__(self, episode: Episode) -> None:
        super().__init__()
        self.episode = episode
        self.app.router.add_get("/service/data/EXR/{key}", self._csv)

    async def _csv(self, request: web.Request) -> web.Response:
        assert request.query["format"] == "csvdata"
        currencies = request.match_info["key"].split(".")[1].split("+")
        lo = date.fromisoformat(request.query["startPeriod"])
        hi = date.fromisoformat(request.query["endPeriod"])
        head = [
            "KEY",
            "FREQ",
            "CURRENCY",
            "CURRENCY_DENOM",
            "EXR_TYPE",
            "EXR_SUFFIX",
            "TIME_PERIOD",
            "OBS_VALUE",
            "OBS_STATUS",
            "TITLE",
        ]
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(head)
        d = lo
        while d <= hi:
            t = datetime(d.year, d.month, d.day, 14, 15, tzinfo=BERLIN).timestamp()
            usd = self.episode.at_or_before("EUR/USD", t)
            if d.weekday() < 5 and usd is not None:
                for c in currencies:
                    if c == "USD":
                        v: float | None = usd
                    elif c == "GBP":
                        gbp = self.episode.at_or_before("GBP/USD", t)
                        v = usd / gbp if gbp else None
                    else:
                        x = self.episode.at_or_before(self.VIA[c], t)
                        v = usd * x if x else None
                    if v is not None:
                        w.writerow(
                            [
                                f"EXR.D.{c}.EUR.SP00.A",
                                "D",
                                c,
                                "EUR",
                                "SP00",
                                "A",
                                d.isoformat(),
                                f"{v:.6f}",
                                "A",
                                f"{c}/EUR",
                            ]
                        )
            d += timedelta(days=1)
        return web.Response(text=out.getvalue(), content_type="text/csv")


# --------------------------------------------------------------------------- Dukascopy

CANDLE = struct.Struct(">5i1f")


def bi5(records: list[tuple[int, int, int, int, int, float]]) -> bytes:
    """LZMA ("alone" format, as Dukascopy's files) of packed big-endian candles."""
    raw = b"".join(CANDLE.pack(*r) for r in records)
    return lzma.compress(raw, format=lzma.FORMAT_ALONE) if raw else b""


class FakeDukascopy(FakeServer):
    """``GET /{INST}/{YYYY}/{MM}/BID_candles_hour_1.bi5`` (month from 00) and the day files
    ``/{INST}/{YYYY}/{MM}/{DD}/BID_candles_min_1.bi5``: every hour of the period, the
    episode's closes as traded hours, the rest flat with volume 0; 404 for others."""

    INSTRUMENTS: ClassVar[dict[str, Any]] = {
        "EURUSD": ("EUR/USD", 1e5),
        "GBPUSD": ("GBP/USD", 1e5),
        "USDCAD": ("USD/CAD", 1e5),
        "USDCHF": ("USD/CHF", 1e5),
        "USDJPY": ("USD/JPY", 1e3),
        "XAUUSD": ("XAU/USD", 1e3),
        "XAGUSD": ("XAG/USD", 1e3),
        "USA500IDXUSD": ("SPX", 1e3),
        "USATECHIDXUSD": ("NDX", 1e3),
        "JPNIDXJPY": ("N225", 1e3),
    }

    def __init__(self, episode: Episode, instruments: set[str] | None = None) -> None:
        super().__init__()
        self.episode = episode
        self.served = instruments if instruments is not None else set(self.INSTRUMENTS)
        self.app.router.add_get("/{inst}/{year}/{month}/BID_candles_hour_1.bi5", self._month)
        self.app.router.add_get("/{inst}/{year}/{month}/{day}/BID_candles_min_1.bi5", self._day)

    def _closes(self, inst: str) -> dict[int, float]:
        """bar open (epoch s) -> close."""
        symbol, _scale = self.INSTRUMENTS[inst]
        return {int(t) - 3600: v for t, v in self.episode.rows[symbol]}

    def _candles(self, inst: str, start: datetime, end: datetime, step: int) -> bytes:
        _symbol, scale = self.INSTRUMENTS[inst]
        closes = self._closes(inst)
        records = []
        last = None
        t = int(start.timestamp())
        while t < end.timestamp():
            hour = t - t % 3600
            if hour in closes and (step == 3600 or t + step == hour + 3600):
                p = round(closes[hour] * scale)
                records.append((t - int(start.timestamp()), p, p, p, p, 12.5))
                last = p
            elif last is not None:
                records.append((t - int(start.timestamp()), last, last, last, last, 0.0))
            t += step
        return bi5(records)

    async def _month(self, request: web.Request) -> web.Response:
        inst = request.match_info["inst"]
        if inst not in self.served:
            raise web.HTTPNotFound()
        y, m = int(request.match_info["year"]), int(request.match_info["month"]) + 1
        start = datetime(y, m, 1, tzinfo=UTC)
        end = datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=UTC)
        body = self._candles(inst, start, end, 3600)
        return web.Response(body=body, content_type="application/octet-stream")

    async def _day(self, request: web.Request) -> web.Response:
        inst = request.match_info["inst"]
        if inst not in self.served:
            raise web.HTTPNotFound()
        y, m = int(request.match_info["year"]), int(request.match_info["month"]) + 1
        start = datetime(y, m, int(request.match_info["day"]), tzinfo=UTC)
        body = self._candles(inst, start, start + timedelta(days=1), 60)
        return web.Response(body=body, content_type="application/octet-stream")


# --------------------------------------------------------------------------- Yahoo


class FakeYahoo(FakeServer):
    """``GET /v8/finance/chart/{ticker}?period1&period2&interval=1d``; 404 with Yahoo's error
    JSON for tickers it does not have."""

    TICKERS: ClassVar[dict[str, Any]] = {
        "^GSPC": ("SPX", NEW_YORK, (9, 30)),
        "^NDX": ("NDX", NEW_YORK, (9, 30)),
        "^VIX": ("VIX", NEW_YORK, (9, 30)),
        "^N225": ("N225", TOKYO, (9, 0)),
        "DX-Y.NYB": ("DXY", NEW_YORK, (0, 0)),
    }

    def __init__(self, episode: Episode) -> None:
        super().__init__()
        self.episode = episode
        self.app.router.add_get("/v8/finance/chart/{ticker}", self._chart)

    async def _chart(self, request: web.Request) -> web.Response:
        ticker = request.match_info["ticker"]
        if ticker not in self.TICKERS:
            body = {
                "chart": {
                    "result": None,
                    "error": {
                        "code": "Not Found",
                        "description": "No data found, symbol may be delisted",
                    },
                }
            }
            return web.json_response(body, status=404)
        symbol, zone, (hh, mm) = self.TICKERS[ticker]
        p1, p2 = int(request.query["period1"]), int(request.query["period2"])
        stamps, closes = [], []
        for d, v in sorted(self.episode.daily(symbol).items()):
            t = int(datetime(d.year, d.month, d.day, hh, mm, tzinfo=zone).timestamp())
            if p1 <= t < p2:
                stamps.append(t)
                closes.append(v)
        meta: dict[str, Any] = {
            "currency": "USD",
            "symbol": ticker,
            "exchangeName": "X",
            "instrumentType": "INDEX",
            "exchangeTimezoneName": str(zone),
            "timezone": "EST",
            "dataGranularity": "1d",
        }
        result: dict[str, Any] = {"meta": meta}
        if stamps:
            result["timestamp"] = stamps
            result["indicators"] = {
                "quote": [
                    {
                        "open": closes,
                        "high": closes,
                        "low": closes,
                        "close": closes,
                        "volume": [0] * len(closes),
                    }
                ]
            }
        else:
            result["indicators"] = {"quote": [{}]}
        return web.Response(
            body=orjson.dumps({"chart": {"result": [result], "error": None}}),
            content_type="application/json",
        )


# --------------------------------------------------------------------------- exchanges

BINANCE_451 = (
    '{\n  "code": 0,\n  "msg": "Service unavailable from a restricted location according to '
    "'b. Eligibility' in https://www.binance.com/en/terms. Please contact customer service if "
    'you believe you received this message in error."\n}'
)


class FakeBinance(FakeServer):
    """Binance from a restricted location: 451 with Binance's body for every request."""

    def __init__(self) -> None:
        super().__init__()
        self.app.router.add_route("*", "/{tail:.*}", self._refuse)

    async def _refuse(self, request: web.Request) -> web.Response:
        return web.Response(status=451, text=BINANCE_451, content_type="application/json")


KRAKEN_XBTUSD = {
    "altname": "XBTUSD",
    "wsname": "XBT/USD",
    "aclass_base": "currency",
    "base": "XXBT",
    "aclass_quote": "currency",
    "quote": "ZUSD",
    "lot": "unit",
    "cost_decimals": 5,
    "pair_decimals": 1,
    "lot_decimals": 8,
    "lot_multiplier": 1,
    "leverage_buy": [2, 3],
    "leverage_sell": [2, 3],
    "fees": [[0, 0.4]],
    "fees_maker": [[0, 0.25]],
    "fee_volume_currency": "ZUSD",
    "margin_call": 80,
    "margin_stop": 40,
    "ordermin": "0.00005",
    "costmin": "0.5",
    "tick_size": "0.1",
    "status": "online",
}


def kraken_with_btc_trades(episode: Episode) -> FakeKraken:
    """Kraken with a BTC/USD market whose public trades are the episode's hourly closes (one
    trade a second before each bar's end), so bars built from trades give the same closes."""
    from tests import fake_history_servers as fhs

    srv = FakeKraken({"error": [], "result": {"XXBTZUSD": [], "last": 0}})
    pairs = dict(fhs.KRAKEN_ASSET_PAIRS["result"])
    pairs["XXBTZUSD"] = KRAKEN_XBTUSD
    srv.asset_pairs = {"error": [], "result": pairs}
    srv.trades = [(t - 1.0, v, 0.5) for t, v in episode.rows["BTC/USD"]]
    return srv


def dump(body: object) -> bytes:
    return orjson.dumps(body)
