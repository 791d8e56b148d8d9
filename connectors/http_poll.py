"""Shared plumbing of the polled HTTP sources (NY Fed, FRED, Treasury).

- One aiohttp session per feed, a total timeout on every request.
- Conditional requests: a source's ETag / Last-Modified is sent back as If-None-Match /
  If-Modified-Since; a 304 means nothing new and costs the source almost nothing.
- 429 and 5xx raise `PollError` (retried with backoff; Retry-After is honoured).
- 451 and 403 raise `SourceUnavailable`: the source refuses this location or client (FRED's
  keyless ``fredgraph.csv`` answers 403 to programmatic clients since about 2026-05-30, see
  quantmod issues #453-#455; Binance answers 451 "Service unavailable from a restricted
  location" from the US and some clouds, ccxt issue #16044). The feed says so and waits
  ``feeds.unavailable_retry`` before trying again.
- Values are stamped with when they became known (publication time), not when fetched:
  see :mod:`connectors.publication`. A value fetched before its nominal publication time is
  stamped at the fetch.
- Secrets (API keys in query strings) never appear in errors or logs: `redact`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import date
from urllib.parse import urlsplit

import aiohttp

from bot.core.retry_after import parse_retry_after
from connectors.base import (
    FeedContext,
    PolledConfigT,
    PolledFeed,
    PollError,
    SourceUnavailable,
)
from connectors.publication import StampName, known_at, latest_due, next_business_day

log = logging.getLogger(__name__)

USER_AGENT = "stressbot/0.1 (+market-stress alerts)"


#: Seconds after the nominal publication time before polling for a value.
PUBLICATION_MARGIN = 60.0


def redact(text: str, secrets: list[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


def _squash(text: str) -> str:
    """One line of an error body (HTML tags and runs of whitespace removed)."""
    return " ".join(re.sub(r"<[^>]*>", " ", text).split())[:160]


class HttpPolledFeed(PolledFeed[PolledConfigT]):
    """A polled feed over HTTP with conditional GETs and safe error messages."""

    def __init__(self, name: str, cfg: PolledConfigT, ctx: FeedContext) -> None:
        super().__init__(name, cfg, ctx)
        self.http: aiohttp.ClientSession | None = None
        self.secrets: list[str] = []
        self._validators: dict[str, tuple[str | None, str | None]] = {}
        self._first_seen: dict[tuple[str, date], float] = {}
        self._newest: dict[str, tuple[date, StampName]] = {}  # canonical -> newest date seen
        self.max_idle = cfg.max_idle

    def stamp(self, canonical: str, d: date, stamp: StampName) -> float:
        """Publication time of `canonical` for date `d`; never later than when we first saw
        it (so an early publication is stamped when it was fetched, and stays so)."""
        newest = self._newest.get(canonical)
        if newest is None or d > newest[0]:
            self._newest[canonical] = (d, stamp)
        key = (canonical, d)
        seen = self._first_seen.get(key)
        if seen is None:
            seen = self._first_seen[key] = self.clock()
            if len(self._first_seen) > 10_000:
                self._first_seen.clear()
                self._first_seen[key] = seen
        return min(known_at(d, stamp), seen)

    def next_poll_delay(self, now: float) -> float:
        """Poll every `interval` while a value is due; once every symbol has the newest value
        that can have been published, wait for the next publication (at most max_idle)."""
        if self.max_idle <= self.interval or len(self._newest) < len(set(self.symbols.values())):
            return self.interval
        waits = []
        for d, stamp in self._newest.values():
            due = latest_due(stamp, now)
            if stamp == "effective" or due is None or d < due:
                return self.interval
            waits.append(known_at(next_business_day(d), stamp) + PUBLICATION_MARGIN - now)
        return min(max(min(waits), self.interval), self.max_idle)

    async def setup(self) -> None:
        self.http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
        )

    async def teardown(self) -> None:
        if self.http is not None:
            await self.http.close()
            self.http = None

    async def get(
        self, url: str, params: Mapping[str, str] | None = None, cache_key: str | None = None
    ) -> bytes | None:
        """GET `url`; the body, or None if the source says nothing changed (304)."""
        assert self.http is not None, "setup() not called"
        key = cache_key or url
        headers: dict[str, str] = {}
        etag, modified = self._validators.get(key, (None, None))
        if etag:
            headers["If-None-Match"] = etag
        if modified:
            headers["If-Modified-Since"] = modified
        host = urlsplit(url).netloc
        try:
            async with self.http.get(url, params=params, headers=headers) as resp:
                self.health.msgs += 1
                self.health.last_msg_wall = self.clock()
                if resp.status == 304:
                    return None
                if resp.status == 429 or resp.status >= 500:
                    ra = parse_retry_after(resp.headers.get("Retry-After"), now=self.clock())
                    raise PollError(
                        f"HTTP {resp.status} {resp.reason or ''} from {host}".strip(),
                        retry_after=ra,
                    )
                if resp.status in (403, 451):
                    text = (await resp.text(errors="replace"))[:300]
                    raise SourceUnavailable(host, resp.status, redact(_squash(text), self.secrets))
                if resp.status != 200:
                    text = (await resp.text(errors="replace"))[:200]
                    raise PollError(redact(f"HTTP {resp.status} from {host}: {text}", self.secrets))
                body = await resp.read()
                self._validators[key] = (
                    resp.headers.get("ETag"),
                    resp.headers.get("Last-Modified"),
                )
                return body
        except (PollError, SourceUnavailable):
            raise
        except TimeoutError:
            raise PollError(f"no answer from {host} within {self.timeout:g}s") from None
        except aiohttp.ClientError as e:
            raise PollError(
                redact(f"{type(e).__name__} from {host}: {e}", self.secrets)[:300]
            ) from None

    def emit_new(self, obs: list[tuple[str, float, float]]) -> int:
        """Emit observations (canonical, ts, value) not emitted before; returns how many."""
        new = 0
        now = self.clock()
        for canonical, ts, value in sorted(obs, key=lambda o: o[1]):
            last = self.validator.last_ts(canonical)
            if last is not None and ts <= last:
                continue  # every poll returns the recent window again: not a duplicate
            if self.emit(canonical, ts, value, now):
                new += 1
        return new
