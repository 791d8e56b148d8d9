"""`stressbot demo`'s download: progress per source, and offline a fast "no network" with the
`--data` command to run instead (issue 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connectors.history.common import HistoryDownloadError
from connectors.history.episodes import URLS_ENV, ensure_episode, urls_from_env
from connectors.history.sources import DEFAULT_ORDER
from tests.conftest import ROOT, shared_path
from tests.fake_history_sources import Episode
from tests.test_history_sources_episode import EPISODE, serving

#: every source of the default orders
NAMES = sorted({n for order in DEFAULT_ORDER.values() for n in order})


def test_demo_offline_says_no_network_within_seconds_with_the_data_hint(tmp_path: Path) -> None:
    # every source on a closed loopback port, and one on a name that does not resolve
    urls = {n: "http://127.0.0.1:9" for n in NAMES} | {"yahoo": "http://no-such-host.invalid"}
    env = {k: v for k, v in os.environ.items() if k != "FRED_API_KEY"}
    env |= {
        "STRESSBOT_CACHE": str(tmp_path),
        URLS_ENV: ",".join(f"{k}={v}" for k, v in urls.items()),
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - started
    said = done.stdout + done.stderr
    assert elapsed < 10, (elapsed, said)
    assert done.returncode == 1, said
    assert "no network" in said
    assert "stressbot demo --data ../shared/data/history/episode-312.csv" in said
    assert "raise --retries" not in said  # an option demo does not have
    assert "cannot resolve no-such-host.invalid" in said or "cannot connect" in said


async def test_ensure_episode_reports_progress_per_source_then_reuses_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FRED_API_KEY", raising=False)
    episode = Episode(shared_path(*EPISODE))
    said: list[str] = []
    async with serving(episode) as srv:
        urls = srv.urls() | {"bitstamp": srv.kraken.url, "coinbase": srv.kraken.url}
        monkeypatch.setenv(URLS_ENV, ",".join(f"{k}={v}" for k, v in urls.items()))
        path = await ensure_episode("312", tmp_path, min_interval=0, progress=said.append)
        made = sum(len(s.requests) for s in srv.all())

        again = await ensure_episode("312", tmp_path, min_interval=0, progress=said.append)

        assert sum(len(s.requests) for s in srv.all()) == made  # the file is reused
    assert again == path and path.name == "episode-312_2020-02-10_2020-04-10.csv"
    for name in ("treasury", "nyfed", "frb", "dukascopy", "yahoo", "kraken", "ecb"):
        assert any(line.startswith(f"{name}: ") for line in said), name  # per source
    assert any("FAILED" in line and "bitstamp" in line for line in said)
    symbols = {ln.split(",")[1] for ln in path.read_text().splitlines()[1:]}
    assert symbols == set(DEFAULT_ORDER)


def test_source_urls_from_the_environment() -> None:
    env = {URLS_ENV: "yahoo=http://127.0.0.1:1, dukascopy=http://127.0.0.1:2/datafeed"}
    assert urls_from_env(env) == {
        "yahoo": "http://127.0.0.1:1",
        "dukascopy": "http://127.0.0.1:2/datafeed",
    }
    with pytest.raises(HistoryDownloadError, match=URLS_ENV):
        urls_from_env({URLS_ENV: "yahoo"})
