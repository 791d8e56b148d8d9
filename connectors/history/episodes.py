"""Stress episodes as replay files in the download cache (what `stressbot demo` replays).

:func:`ensure_episode` returns the episode's file, downloading it first when the cache has
none. Offline it fails fast: every host is probed first (DNS and TCP, a few seconds, all at
once, :func:`connectors.history.common.probe_hosts`), and when none can be reached it raises
:class:`NoNetwork` at once instead of retrying. Source URLs can be pointed elsewhere (mirrors,
proxies, tests) with ``STRESSBOT_HISTORY_URLS="treasury=http://...,yahoo=http://..."``
(source name or ccxt exchange id = base URL), read here so that the demo needs no config.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from connectors.history.common import (
    DEFAULT_MIN_INTERVAL,
    HistoryDownloadError,
    NoNetwork,
    Progress,
    default_cache_dir,
)
from connectors.history.download import (
    DownloadOptions,
    download,
    source_table,
    write_replay,
)
from connectors.history.ohlc import MarketSpec

URLS_ENV = "STRESSBOT_HISTORY_URLS"


@dataclass(frozen=True, slots=True)
class Episode:
    """A stress episode: the window of interest and the lead-in that warms the rule windows."""

    start: date
    end: date
    lead_in_days: int = 10

    @property
    def download_from(self) -> date:
        return self.start - timedelta(days=self.lead_in_days)


#: 10 calendar days of lead-in: at least 6 weekday closes before the start even across a
#: Monday holiday (2020-02-17 Presidents' Day), so 5-day windows of daily series are warm
#: when the episode begins; hourly series get 240 bars.
EPISODES: dict[str, Episode] = {
    "312": Episode(date(2020, 2, 20), date(2020, 4, 10)),
    "519": Episode(date(2021, 5, 5), date(2021, 5, 31)),
}


def urls_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``NAME=URL,NAME=URL`` of :data:`URLS_ENV` as a mapping."""
    text = (environ if environ is not None else os.environ).get(URLS_ENV, "")
    out: dict[str, str] = {}
    for item in text.replace(";", ",").split(","):
        if not item.strip():
            continue
        name, sep, url = item.partition("=")
        if not sep or not name.strip() or not url.strip():
            raise HistoryDownloadError(f"{URLS_ENV}: expected NAME=URL[,NAME=URL...], got {item!r}")
        out[name.strip()] = url.strip()
    return out


async def ensure_episode(
    name: str = "312",
    cache_dir: Path | None = None,
    *,
    source_urls: Mapping[str, str] | None = None,
    sources: Mapping[str, Sequence[str]] | None = None,
    markets: Mapping[str, MarketSpec] | None = None,
    min_interval: float = DEFAULT_MIN_INTERVAL,
    progress: Progress | None = None,
) -> Path:
    """A replay file of episode `name` in the cache, downloaded first when missing.

    The file covers ``start - lead_in .. end`` (see :data:`EPISODES`) and lives at
    ``<cache>/episodes/episode-<name>_<from>_<to>.csv``; a download that could not fill every
    symbol is written beside it as ``...-partial.csv`` and tried again next time (what was
    fetched is cached, so that is quick). The keyword arguments point the download at other
    endpoints and are not part of the file's identity. Progress goes to `progress`, else to
    this module's logger at INFO. Raises :class:`NoNetwork` within seconds when no source
    can be reached.
    """
    ep = EPISODES.get(name)
    if progress is None:
        progress = logging.getLogger(__name__).info
    if ep is None:
        raise HistoryDownloadError(
            f"unknown episode {name!r}; known: {', '.join(sorted(EPISODES))}"
        )
    root = cache_dir or default_cache_dir()
    out = root / "episodes" / f"episode-{name}_{ep.download_from}_{ep.end}.csv"
    if out.exists():
        return out
    opts = DownloadOptions(
        start=ep.download_from,
        end=ep.end,
        cache_dir=root,
        source_urls={**urls_from_env(), **(source_urls or {})},
        sources=dict(sources or {}),
        markets=markets,
        min_interval=min_interval,
        progress=progress,
    )
    result = await download(opts)
    if result.offline:
        reasons = sorted({r.error or "" for r in result.reports})
        raise NoNetwork(
            "no network: none of the history sources could be reached ("
            + "; ".join(reasons[:3])
            + (f"; and {len(reasons) - 3} more" if len(reasons) > 3 else "")
            + ")"
        )
    progress(source_table(result.reports))
    if not result.rows:
        raise HistoryDownloadError(
            "no source answered with data for the episode; see the table above"
        )
    target = out
    if result.missing:
        target = out.with_name(out.stem + "-partial.csv")
        progress(
            f"no source had {', '.join(result.missing)}: the replay runs without "
            f"{'it' if len(result.missing) == 1 else 'them'} (written to {target}; the next "
            "run tries the missing symbols again)"
        )
    await asyncio.to_thread(write_replay, result.rows, target)
    return target


__all__ = ["EPISODES", "Episode", "NoNetwork", "ensure_episode", "urls_from_env"]
