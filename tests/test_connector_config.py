"""The [feeds] table: defaults, validation messages and the shipped example."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.config import FeedsConfig

ROOT = Path(__file__).resolve().parent.parent


def test_durations_accept_milliseconds_and_units() -> None:
    cfg = FeedsConfig.model_validate({"flush_interval": "5ms", "stale_after": "2m"})
    assert cfg.flush_interval == 0.005 and cfg.stale_after == 120.0


def test_unknown_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        FeedsConfig.model_validate(
            {"sources": {"k": {"kind": "kraken", "symbols": {"XBT/USD": "BTC/USD"}, "urll": "x"}}}
        )


def test_unknown_canonical_symbol_is_rejected_with_the_list() -> None:
    with pytest.raises(ValidationError, match="unknown canonical symbol 'BTC/USDT'"):
        FeedsConfig.model_validate(
            {"sources": {"k": {"kind": "kraken", "symbols": {"XBT/USD": "BTC/USDT"}}}}
        )


def test_combine_must_name_feeds_that_deliver_the_symbol() -> None:
    with pytest.raises(ValidationError, match="feed 'k' does not deliver XAU/USD"):
        FeedsConfig.model_validate(
            {
                "sources": {"k": {"kind": "kraken", "symbols": {"XBT/USD": "BTC/USD"}}},
                "combine": {"XAU/USD": {"sources": ["k"]}},
            }
        )


def example_feeds() -> dict[str, object]:
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    return dict(data["feeds"])


def test_example_config_feeds_section_is_valid() -> None:
    cfg = FeedsConfig.model_validate(example_feeds())
    kinds = {f.kind for f in cfg.sources.values()}
    assert {"ccxt", "kraken", "oanda", "nyfed", "fred", "treasury"} <= kinds
    btc = [n for n, f in cfg.sources.items() if "BTC/USD" in f.symbols.values()]
    assert len(btc) >= 2


def test_market_hours_zone_must_be_an_iana_zone() -> None:
    with pytest.raises(ValidationError, match="IANA time zone"):
        FeedsConfig.model_validate({"market_hours": {"zone": "New York"}})
