"""Silences (issue 12): matchers, the CLI and Telegram on the same silences in Redis, what they
hold back (recorded, not delivered later), and /mute as one kind of silence."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.models import Alert
from bot.notify import deliver_pending
from bot.notify.ledger import Ledger
from bot.notify.silences import (
    MAX_VALUE,
    MUTE,
    Matcher,
    SilenceError,
    Silences,
    labels_of,
    silencing,
)
from bot.store.redis_store import Checkpoint, Store
from bot.telegram.command_bot import TelegramCommandBot
from tests.conftest import REDIS_URL, ROOT
from tests.fake_telegram import FakeTelegram, Sent
from tests.notify_fixtures import (
    alert,
    notify_config,
    reply_to,
    running_command_bot,
    telegram_fixture,
    tg_ids,
)

ADMIN = 4242
ALERT_CHAT = -1001234567890
tg = telegram_fixture()


# ---- matchers ---------------------------------------------------------------------------------


def test_matchers_have_alertmanagers_operators_with_anchored_regexes() -> None:
    a = labels_of(alert(1, rule="btc_crash", severity="warning", pattern="crypto_crash"))
    assert Matcher.parse("rule=btc_crash").matches(a)
    assert not Matcher.parse("rule=btc").matches(a)
    assert Matcher.parse("rule!=sofr").matches(a)
    assert Matcher.parse("rule=~btc.*").matches(a)
    assert not Matcher.parse("rule=~crash").matches(a)  # anchored: the whole value
    assert Matcher.parse("pattern!~rates_.*").matches(a)
    assert not Matcher.parse("severity!~warn.*").matches(a)
    assert str(Matcher.parse("severity!=info")) == "severity!=info"
    with pytest.raises(SilenceError, match="NAME one of rule, pattern, severity"):
        Matcher.parse("symbol=BTC/USD")
    with pytest.raises(SilenceError, match="bad regular expression"):
        Matcher.parse("rule=~(")


@given(st.text(min_size=1, max_size=20), st.text(max_size=20))
def test_an_escaped_regex_matches_exactly_the_equal_value(value: str, other: str) -> None:
    m = Matcher("rule", "=~", re.escape(value))
    assert m.matches({"rule": value})
    assert m.matches({"rule": other}) == (other == value)
    assert Matcher("rule", "!~", re.escape(value)).matches({"rule": other}) == (other != value)
    assert Matcher.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("rule=~(a+)+$", "nested quantifier"),
        ("pattern=~(a|ab)*x", "nested quantifier"),
        ("rule=~.*.*.*.*x", "too costly to match"),
        (r"rule=~(a)\1", "backreferences, lookarounds"),
        ("rule=~" + "a" * 300, "at most 256 characters"),
    ],
    ids=["nested", "nested-alternation", "too-many-ways", "backreference", "too-long"],
)
def test_a_regex_that_could_backtrack_for_ever_is_refused_naming_the_matcher_and_why(
    text: str, why: str
) -> None:
    with pytest.raises(SilenceError, match=re.escape(f"matcher {text[:64]!r}: ") + ".*" + why):
        Matcher.parse(text)


def test_the_guard_lets_the_regexes_silences_are_made_of_through() -> None:
    for text in ("rule=~.*crash.*", "pattern=~(rates|fx)_.*", "rule=~feed:.*", "rule=~[a-z]+_\\d+"):
        assert Matcher.parse(text).regex


def test_a_value_longer_than_the_guard_allows_is_held_back_by_no_regex_matcher() -> None:
    long = {"rule": "a" * (MAX_VALUE + 1)}
    assert not Matcher.parse("rule=~a*").matches(long)
    assert not Matcher.parse("rule!~b.*").matches(long)
    assert Matcher.parse("rule=~a*").matches({"rule": "a" * MAX_VALUE})


async def test_an_unsafe_regex_stored_by_an_older_version_cannot_stall_delivery(
    store: Store, tg: FakeTelegram
) -> None:
    # Written as a version without the guard would have: (a+)+$ against "aaa...a_" backtracks
    # 2^40 times in Python's re. The notifier must not use it (and so deliver the alert).
    doc = {
        "id": "0ld5ilence00",
        "matchers": [{"name": "rule", "value": "(a+)+$", "isRegex": True, "isEqual": True}],
        "startsAt": time.time() - 60,
        "endsAt": time.time() + 3600,
    }
    await store.redis.hset(store.key("notify:silences"), doc["id"], json.dumps(doc))
    await store.publish_alert(alert(1, rule="a" * 40 + "_"))
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": ALERT_CHAT}])
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg, ALERT_CHAT) == ["a" * 40 + "_:1:firing"]
    assert report.destinations["desk"].muted == 0
    assert await Silences(store).all() == []


async def test_a_silence_holds_back_only_while_active_and_all_matchers_match(store: Store) -> None:
    sil = Silences(store)
    now = time.time()
    s = await sil.add(
        [Matcher.parse("pattern=crypto_crash"), Matcher.parse("severity!=critical")],
        starts=now + 60,
        ends=now + 3600,
        now=now,
    )
    warn = alert(1, severity="warning")
    every = await sil.all()
    assert silencing(every, warn, now) is None  # not started yet
    assert silencing(every, warn, now + 61) == s
    assert silencing(every, alert(2, severity="critical"), now + 61) is None
    assert silencing(every, alert(3, severity="warning", pattern="rates_shock"), now + 61) is None
    assert silencing(every, warn, now + 3600) is None  # ended
    with pytest.raises(SilenceError, match="end in the future"):
        await sil.add([], ends=now - 1, starts=now - 10)


# ---- the CLI and Telegram share the silences ------------------------------------------------


def _toml(store: Store, tmp_path: Path) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(f'[redis]\nprefix = "{store.prefix}"\n')
    return p


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": REDIS_URL, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def _seed_rules(store: Store) -> None:
    states = {
        r: {"state": "inactive", "severity": sev, "pattern": pat}
        for r, sev, pat in (
            ("btc_crash", "critical", "crypto_crash"),
            ("sofr", "warning", "funding_stress"),
        )
    }
    await store.commit(Checkpoint("p", "f", time.time(), b"{}"), rule_states=states)


async def ask(tg: FakeTelegram, text: str) -> Sent:
    return await reply_to(tg, text, user=ADMIN, username="alice", within=10)


def running_bot(store: Store, tg: FakeTelegram) -> AbstractAsyncContextManager[TelegramCommandBot]:
    desk = {"name": "desk", "chat_id": ALERT_CHAT, "charts": False}
    return running_command_bot(store, tg, allowed_users=[ADMIN], chats=[desk])


async def test_a_silence_set_from_the_cli_holds_back_telegram_and_shows_in_status(
    store: Store, tg: FakeTelegram, tmp_path: Path
) -> None:
    cfg_file = _toml(store, tmp_path)
    await _seed_rules(store)
    code, out = await _cli(
        "silence",
        "add",
        "rule=btc_crash",
        "--duration",
        "2h",
        "--author",
        "bob",
        "--comment",
        "exchange maintenance",
        "--config",
        str(cfg_file),
    )
    assert code == 0, out
    sid = out.split()[0]
    await store.publish_alert(alert(1))  # btc_crash: held back
    await store.publish_alert(alert(2, rule="sofr", severity="warning"))
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": ALERT_CHAT}])
    report = await deliver_pending(cfg, store)
    assert tg_ids(tg, ALERT_CHAT) == ["sofr:2:firing"]
    assert report.destinations["desk"].muted == 1
    async with running_bot(store, tg):
        status = await ask(tg, "/status")
        listed = await ask(tg, "/silences")
        rules = await ask(tg, "/rules")
    assert "Silenced" in status.visible
    assert "rule=btc_crash until" in status.visible and "by bob" in status.visible
    assert sid in listed.visible and "exchange maintenance" in listed.visible
    assert "1 message(s) held back" in listed.visible
    assert re.search(r"btc_crash.*🔇", rules.visible) and not re.search(r"sofr.*🔇", rules.visible)
    code, out = await _cli("silence", "list", "--suppressed", "--json", "--config", str(cfg_file))
    assert code == 0, out
    doc = json.loads(out)
    assert [s["id"] for s in doc["silences"]] == [sid]
    assert doc["silences"][0]["suppressed"] == 1
    assert [(x["dest"], x["alert_id"], x["silence"]) for x in doc["suppressed"]] == [
        ("desk", "btc_crash:1:firing", sid)
    ]
    # Removed: later alerts go out again; the held-back one is not sent afterwards
    # (Alertmanager's behaviour), it stays on the record.
    code, out = await _cli("silence", "rm", sid[:6], "--config", str(cfg_file))
    assert code == 0 and f"removed {sid}" in out, out
    await store.publish_alert(alert(3))
    await deliver_pending(cfg, store)
    assert tg_ids(tg, ALERT_CHAT) == ["sofr:2:firing", "btc_crash:3:firing"]
    assert len(await Silences(store).suppressed()) == 1


async def test_a_silence_set_from_telegram_is_listed_by_the_cli_and_holds_back_delivery(
    store: Store, tg: FakeTelegram, tmp_path: Path
) -> None:
    cfg_file = _toml(store, tmp_path)
    async with running_bot(store, tg):
        bad = await ask(tg, "/silence symbol=BTC 2h")
        nodur = await reply_to(
            tg, "/silence rule=btc_crash", user=ADMIN, username="alice", within=10
        )
        r = await reply_to(
            tg,
            "/silence severity=~warn.* pattern!=crypto_crash 2h night shift",
            user=ADMIN,
            username="alice",
            within=10,
        )
    assert "NAME one of rule, pattern, severity" in bad.visible
    assert "then a duration" in nodur.visible
    sid = re.search(r"Silence (\w+):", r.visible).group(1)  # type: ignore[union-attr]
    code, out = await _cli("silence", "list", "--json", "--config", str(cfg_file))
    assert code == 0, out
    (s,) = json.loads(out)["silences"]
    assert s["id"] == sid and s["state"] == "active"
    assert s["createdBy"] == "@alice" and s["comment"] == "night shift"
    assert s["matchers"] == [
        {"name": "severity", "value": "warn.*", "isRegex": True, "isEqual": True},
        {"name": "pattern", "value": "crypto_crash", "isRegex": False, "isEqual": False},
    ]
    await store.publish_alert(alert(1, rule="sofr", severity="warning", pattern="funding_stress"))
    await store.publish_alert(alert(2, rule="sofr", severity="critical", pattern="funding_stress"))
    await store.publish_alert(alert(3, severity="warning"))  # crypto_crash: not matched
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": ALERT_CHAT}])
    await deliver_pending(cfg, store)
    assert tg_ids(tg, ALERT_CHAT) == ["sofr:2:firing", "btc_crash:3:firing"]
    async with running_bot(store, tg):
        gone = await ask(tg, f"/unsilence {sid}")
        again = await ask(tg, f"/unsilence {sid}")
    assert "ended" in gone.visible and "No silence" in again.visible
    code, out = await _cli("silence", "list", "--config", str(cfg_file))
    assert code == 0 and "no silences" in out, out


async def test_the_cli_and_telegram_refuse_a_bad_or_unsafe_regex_and_keep_nothing(
    store: Store, tg: FakeTelegram, tmp_path: Path
) -> None:
    cfg_file = str(_toml(store, tmp_path))
    bad_code, bad = await _cli("silence", "add", "rule=~(", "--config", cfg_file)
    unsafe_code, unsafe = await _cli("silence", "add", "rule=~(a+)+$", "--config", cfg_file)
    async with running_bot(store, tg):
        tg_bad = await ask(tg, "/silence rule=~( 2h")
        tg_unsafe = await reply_to(
            tg, "/silence rule=~(a+)+$ 2h", user=ADMIN, username="alice", within=10
        )
    assert bad_code == 2 and "matcher 'rule=~(': bad regular expression: missing )" in bad
    assert unsafe_code == 2 and "matcher 'rule=~(a+)+$': nested quantifier" in unsafe
    assert "Traceback" not in bad + unsafe
    assert "bad regular expression" in tg_bad.visible and "Usage: /silence" in tg_bad.visible
    assert "nested quantifier" in tg_unsafe.visible
    assert await Silences(store).all() == []


async def _keyed_by(store: Store, sid: str) -> list[str]:
    """The keys of the store (listed with SCAN) named after silence `sid` or, for a hash,
    holding a field named `sid`."""
    found = []
    async for k in store.redis.scan_iter(match=f"{store.prefix}:*"):
        is_hash = await store.redis.type(k) in (b"hash", "hash")
        if sid in k.decode() or (is_hash and await store.redis.hexists(k, sid)):
            found.append(k.decode())
    return sorted(found)


async def _held_back_once(store: Store, tg: FakeTelegram) -> str:
    """A silence that suppressed one alert at the desk; its id."""
    s = await Silences(store).add([Matcher.parse("rule=btc_crash")], ends=time.time() + 3600)
    await store.publish_alert(alert(1))
    cfg = notify_config(store, tg, chats=[{"name": "desk", "chat_id": ALERT_CHAT}])
    assert (await deliver_pending(cfg, store)).destinations["desk"].muted == 1
    assert await _keyed_by(store, s.id) == sorted(
        [store.key("notify:silences"), store.key("notify:silenced")]
    )
    return s.id


async def test_silence_rm_removes_every_key_of_the_silence_and_keeps_the_history(
    store: Store, tg: FakeTelegram, tmp_path: Path
) -> None:
    sid = await _held_back_once(store, tg)
    code, out = await _cli("silence", "rm", sid, "--config", str(_toml(store, tmp_path)))
    assert code == 0 and f"removed {sid}" in out, out
    assert await _keyed_by(store, sid) == []
    assert [x.silence for x in await Silences(store).suppressed()] == [sid]  # capped history


async def test_unsilence_removes_every_key_of_the_silence(store: Store, tg: FakeTelegram) -> None:
    sid = await _held_back_once(store, tg)
    async with running_bot(store, tg):
        r = await ask(tg, f"/unsilence {sid}")
    assert "ended" in r.visible
    assert await _keyed_by(store, sid) == []


async def test_mute_is_a_silence_and_unmute_leaves_the_other_silences(
    store: Store, tg: FakeTelegram, tmp_path: Path
) -> None:
    await _seed_rules(store)
    sil = Silences(store)
    other = await sil.add([Matcher.parse("severity=info")], ends=time.time() + 3600)
    async with running_bot(store, tg):
        await ask(tg, "/mute btc_crash 2h")
        await ask(tg, "/mute all 1h")
        mutes = await Ledger(store).mutes()
        await ask(tg, "/unmute")
    assert set(mutes) == {"btc_crash", "*"}
    code, out = await _cli("silence", "list", "--json", "--config", str(_toml(store, tmp_path)))
    assert code == 0, out
    assert [s["id"] for s in json.loads(out)["silences"]] == [other.id]
    assert await Ledger(store).mutes() == {}


async def test_mutes_of_an_older_version_become_silences(store: Store) -> None:
    until = time.time() + 600
    await store.redis.hset(store.key("notify:mutes"), mapping={"btc_crash": repr(until)})
    (s,) = await Silences(store).all()
    assert s.kind == MUTE and s.mute_target == "btc_crash" and s.ends == pytest.approx(until)
    assert not await store.redis.exists(store.key("notify:mutes"))
    assert silencing([s], Alert("x", 0, "btc_crash", "p", "info", ""), time.time()) == s
