"""The feed registry: every config kind has a feed class, built from its config table."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest

from connectors.base import Feed, FeedContext, FeedSetupError, PolledFeed, StreamFeed
from connectors.config import (
    FeedConfig,
    FeedsConfig,
    FredCsvFeedConfig,
    KrakenFeedConfig,
    PolledFeedConfig,
    StreamFeedConfig,
)
from connectors.http_poll import HttpPolledFeed
from connectors.supervisor import FEED_CLASSES, build_feed, feed_class

ROOT = Path(__file__).resolve().parent.parent


def config_kinds() -> dict[str, type]:
    """kind -> config model, for every member of the `FeedConfig` union."""
    union, _discriminator = typing.get_args(FeedConfig)
    out: dict[str, type] = {}
    for model in typing.get_args(union):
        (kind,) = typing.get_args(model.model_fields["kind"].annotation)
        out[kind] = model
    return out


def ctx() -> FeedContext:
    return FeedContext(feeds=FeedsConfig(), sink=lambda *a: None, clock=lambda: 0.0)


def test_every_config_kind_has_a_registered_feed_class_and_no_more() -> None:
    assert set(FEED_CLASSES) == set(config_kinds())


@pytest.mark.parametrize("kind", sorted(config_kinds()))
def test_each_registered_class_imports_and_is_a_feed_of_its_kind(kind: str) -> None:
    cls = feed_class(kind)

    assert issubclass(cls, Feed)
    assert cls.kind == kind
    model = config_kinds()[kind]
    if issubclass(model, StreamFeedConfig):
        assert issubclass(cls, StreamFeed)
    if issubclass(model, PolledFeedConfig):
        assert issubclass(cls, PolledFeed)


def test_an_unknown_kind_names_the_kind_and_the_choices() -> None:
    with pytest.raises(FeedSetupError, match=r"'carrier_pigeon'.*ccxt, fred, fred_csv"):
        feed_class("carrier_pigeon")


def test_a_feed_reads_its_settings_from_its_config() -> None:
    cfg = FredCsvFeedConfig(
        kind="fred_csv", symbols={"DGS10": "US10Y"}, interval=120, timeout=3, max_idle=600
    )

    feed = build_feed("fred", cfg, ctx())

    assert type(feed).__name__ == "FredCsvFeed"
    assert isinstance(feed, HttpPolledFeed)
    assert feed.cfg is cfg
    assert feed.symbols == {"DGS10": "US10Y"}
    assert (feed.interval, feed.timeout, feed.max_idle) == (120.0, 3.0, 600.0)


def test_a_stream_takes_its_schedule_and_stale_after_with_the_feeds_default() -> None:
    cfg = KrakenFeedConfig(kind="kraken", symbols={"XBT/USD": "BTC/USD"})

    feed = build_feed("kraken", cfg, ctx())

    assert isinstance(feed, StreamFeed)
    assert (feed.schedule, feed.stale_after) == ("always", FeedsConfig().stale_after)


def test_building_a_non_ccxt_feed_does_not_import_ccxt() -> None:
    probe = (
        "import sys\n"
        "from connectors.base import FeedContext\n"
        "from connectors.config import FeedsConfig, KrakenFeedConfig\n"
        "from connectors.supervisor import build_feed\n"
        "cfg = KrakenFeedConfig(kind='kraken', symbols={'XBT/USD': 'BTC/USD'})\n"
        "build_feed('k', cfg, FeedContext(feeds=FeedsConfig(), sink=lambda *a: None))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ccxt'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
