"""Message formatting, limits, retry-after parsing and the [notify] config."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from bot.core.models import AlertKind
from bot.notify.config import NotifyConfig
from bot.notify.discord import discord_retry_after
from bot.notify.format import (
    DC_EMBED_TOTAL,
    RESOLVED_COLOUR,
    SEVERITY_COLOUR,
    TG_TEXT_LIMIT,
    alert_lines,
    discord_embed,
    fmt_times,
    split_lines,
    tg_len,
)
from bot.notify.telegram import parse_retry_after
from bot.runtime.config import Config
from tests.conftest import shared_path
from tests.fake_discord import validate
from tests.fake_telegram import parse_html
from tests.notify_fixtures import alert


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("429_retry_after_2282_with_parameters.json", 2282),
        ("429_retry_after_34_with_parameters_from_python_repr.json", 34),
        ("429_retry_after_3_no_parameters_2016.json", 3),
        ("429_retry_after_134_no_parameters_2016.json", 134),
    ],
)
def test_telegram_retry_after_is_read_from_every_recorded_429(name: str, seconds: int) -> None:
    body = json.loads(shared_path("fixtures", "telegram", name).read_text())
    assert parse_retry_after(body) == seconds


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("429_user_rate_limit.json", 64.57),
        ("429_shared_resource_rate_limit.json", 1336.57),
        ("429_global_rate_limit.json", 64.57),
    ],
)
def test_discord_retry_after_uses_the_precise_body_value(name: str, seconds: float) -> None:
    d = json.loads(shared_path("fixtures", "discord", name).read_text())
    assert discord_retry_after(d["body"], d["headers"]) == seconds


def test_times_are_shown_in_utc_and_the_configured_zone() -> None:
    u, loc = fmt_times(1_700_000_000.0, "America/New_York")
    assert u == "2023-11-14 22:13:20 UTC"
    assert loc == "2023-11-14 17:13:20 EST (America/New_York)"
    assert fmt_times(1_700_000_000.0, "UTC")[1] is None


def test_telegram_html_is_valid_for_hostile_values_and_shows_them_verbatim() -> None:
    a = alert(1, summary="<b>&</b> </code>", rule="<rule>", values={"<x>&": -1234.5})
    text = "\n".join(ln.html for ln in alert_lines(a, "UTC"))
    visible = parse_html(text)  # raises like Telegram would on bad HTML
    assert "<b>&</b> </code>" in visible and "<rule>" in visible
    assert "<x>&: -1,234.50" in visible


def test_the_stress_gauge_is_one_readable_line_not_two_raw_numbers() -> None:
    a = alert(1, values={"btc": -12.5, "stress": 78.8, "like_gfc_2008": 0.62})
    visible = parse_html("\n".join(ln.html for ln in alert_lines(a, "UTC")))
    assert "Stress 79/100 · looks 0.62 like gfc_2008" in visible
    assert "btc: -12.50" in visible and "stress: " not in visible and "like_gfc" not in visible
    embed = discord_embed(a, "UTC", with_image=False)
    assert "Stress 79/100" in embed["description"]
    assert [f["name"] for f in embed["fields"]] == ["btc", "Time"]


def test_an_alert_without_the_gauge_has_no_stress_line() -> None:
    visible = parse_html("\n".join(ln.html for ln in alert_lines(alert(1), "UTC")))
    assert "Stress" not in visible


def test_splitting_keeps_every_message_within_the_limit_and_loses_nothing() -> None:
    a = alert(1, summary="&<>" * 5000)  # one very long line of characters that need escaping
    lines = alert_lines(a, "Europe/London")
    msgs = split_lines(lines, TG_TEXT_LIMIT)
    assert len(msgs) > 1
    assert all(tg_len(m) <= TG_TEXT_LIMIT for m in msgs)
    assert "".join(parse_html(m).replace("\n", "") for m in msgs).count("&<>") == 5000


def test_splitting_counts_utf16_units_like_telegram() -> None:
    a = alert(1, summary="📉" * 3000)  # 2 UTF-16 units each: 6000 units
    msgs = split_lines(alert_lines(a, "UTC"), TG_TEXT_LIMIT)
    assert len(msgs) >= 2 and all(tg_len(m) <= TG_TEXT_LIMIT for m in msgs)


def test_discord_embed_is_coloured_by_severity_and_green_when_resolved() -> None:
    assert (
        discord_embed(alert(1, severity="critical"), "UTC", with_image=False)["color"]
        == SEVERITY_COLOUR["critical"]
    )
    assert (
        discord_embed(alert(1, severity="info"), "UTC", with_image=False)["color"]
        == SEVERITY_COLOUR["info"]
    )
    assert (
        discord_embed(alert(1, kind=AlertKind.RESOLVED), "UTC", with_image=False)["color"]
        == RESOLVED_COLOUR
    )


def test_discord_embed_stays_within_every_limit_for_huge_alerts() -> None:
    values: dict[str, float | None] = {f"value_{i}_" + "k" * 300: float(i) for i in range(40)}
    a = alert(1, summary="s" * 10000, rule="r" * 500, values=values)
    embed = discord_embed(a, "Asia/Tokyo", with_image=True)
    assert validate({"embeds": [embed]}, {"chart.png": b"x"}) == {}
    assert len(embed["fields"]) <= 25
    total = (
        len(embed["title"])
        + len(embed["description"])
        + len(embed["footer"]["text"])
        + sum(len(f["name"]) + len(f["value"]) for f in embed["fields"])
    )
    assert total <= DC_EMBED_TOTAL


def test_webhook_urls_must_come_from_the_environment_unless_loopback() -> None:
    with pytest.raises(ValidationError, match="url_env"):
        NotifyConfig.model_validate(
            {
                "discord": {
                    "webhooks": [{"name": "x", "url": "https://discord.com/api/webhooks/1/secret"}]
                }
            }
        )
    ok = NotifyConfig.model_validate(
        {"discord": {"webhooks": [{"name": "x", "url_env": "OPS_WEBHOOK"}]}}
    )
    assert ok.discord.webhooks[0].url_env == "OPS_WEBHOOK"


def test_unknown_notify_keys_and_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Config.model_validate({"notify": {"telegram": {"tokn": "x"}}})
    with pytest.raises(ValidationError, match="unique"):
        NotifyConfig.model_validate(
            {
                "telegram": {"chats": [{"name": "a", "chat_id": 1}]},
                "discord": {"webhooks": [{"name": "a", "url_env": "X"}]},
            }
        )


def test_the_example_config_notify_section_is_valid_with_its_examples_uncommented() -> None:
    import re
    import tomllib

    from tests.conftest import ROOT

    text = (ROOT / "config.example.toml").read_text()
    assert Config.model_validate(tomllib.loads(text)).notify.telegram.chats == []

    def uncomment(block: re.Match[str]) -> str:
        return "\n".join(line[2:] for line in block.group(1).splitlines() if line.startswith("# "))

    enabled = re.sub(r"# >>> example destinations[^\n]*\n(.*?)# <<<", uncomment, text, flags=re.S)
    cfg = Config.model_validate(tomllib.loads(enabled))
    assert [c.name for c in cfg.notify.telegram.chats] == ["desk"]
    assert cfg.notify.telegram.chats[0].topic_id == 42
    assert [w.url_env for w in cfg.notify.discord.webhooks] == ["STRESSBOT_DISCORD_OPS_URL"]
