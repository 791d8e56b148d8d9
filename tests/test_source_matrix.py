"""The README's source matrix matches the code: the example config's feeds (which are on by
default, which are off, which need a key), the feed registry, and the history source order."""

from __future__ import annotations

import re

import pytest

from bot.cli.feeds import _priority
from bot.core.models import DERIVED_SYMBOLS, SYMBOLS
from bot.runtime.config import Config, load_config
from connectors.history.sources import DEFAULT_ORDER
from connectors.supervisor import FEED_CLASSES
from tests.conftest import ROOT

#: feed kinds that need a key from the environment
KEYED_KINDS = {"oanda", "fred"}
NAME = re.compile(r"`([^`]+)`")


def matrix() -> dict[str, dict[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("### Source matrix", 1)[1].split("\n#", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows: dict[str, dict[str, str]] = {}
    for ln in lines[2:]:
        cells = [c.strip() for c in ln.strip("|").split("|")]
        assert len(cells) == len(head), ln
        row = dict(zip(head, cells, strict=True))
        (symbol,) = NAME.findall(row["symbol"])
        assert symbol not in rows, f"{symbol} twice in the matrix"
        rows[symbol] = row
    return rows


def names(cell: str) -> list[str]:
    return NAME.findall(cell)


@pytest.fixture(scope="module")
def example() -> Config:
    return load_config(ROOT / "config.example.toml")


def test_every_canonical_symbol_has_exactly_one_row() -> None:
    assert list(matrix()) == list(SYMBOLS)


def test_default_live_sources_are_the_example_configs_enabled_feeds_in_priority_order(
    example: Config,
) -> None:
    order = _priority(example)
    for symbol, row in matrix().items():
        if symbol in DERIVED_SYMBOLS:
            assert row["default live (keyless)"] == "derived"
            continue
        feeds = order.get(symbol, [])
        enabled = [n for n in feeds if example.feeds.sources[n].enabled]
        assert names(row["default live (keyless)"]) == enabled, symbol
        for n in enabled:  # defaults: keyless feeds of registered kinds only
            kind = example.feeds.sources[n].kind
            assert kind in FEED_CLASSES and kind not in KEYED_KINDS, (symbol, n, kind)


def test_optional_sources_are_the_disabled_feeds_and_keyed_ones_are_marked(
    example: Config,
) -> None:
    order = _priority(example)
    for symbol, row in matrix().items():
        cell = row["optional live (off by default)"]
        disabled = [n for n in order.get(symbol, []) if not example.feeds.sources[n].enabled]
        assert sorted(names(cell)) == sorted(disabled), symbol
        for n in disabled:
            keyed = example.feeds.sources[n].kind in KEYED_KINDS
            assert (f"`{n}` *key*" in cell) == keyed, (symbol, n)


def test_every_feed_of_the_example_config_is_in_the_matrix(example: Config) -> None:
    listed = set()
    for row in matrix().values():
        listed |= set(names(row["default live (keyless)"]))
        listed |= set(names(row["optional live (off by default)"]))
    assert listed == set(example.feeds.sources)


def test_history_sources_are_the_downloaders_default_order() -> None:
    for symbol, row in matrix().items():
        if symbol in DERIVED_SYMBOLS:
            assert row["keyless history"] == "derived"
            continue
        assert names(row["keyless history"]) == list(DEFAULT_ORDER.get(symbol, ())), symbol
