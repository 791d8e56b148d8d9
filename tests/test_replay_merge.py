"""Several replay files are one input merged by time (issue 8, defect 4), a file out of order
is sorted on read, a row from the future is rejected, and `--resume` works over several files.

The split files are written to the test's tmp_path from the shared episode, never kept.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bot.core.models import Alert
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config
from bot.runtime.replay import ReplayOptions, ReplayResult, run_replay, write_jsonl
from bot.store.redis_store import Store
from tests.conftest import shared_path

HEADER = "ts,symbol,value"


def _rows(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER
    return lines[1:]


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "\n" + "".join(r + "\n" for r in rows))
    return path


async def _replay(store: Store, files: list[Path], **kw: object) -> ReplayResult:
    config = Config()
    rules = load_rules(default_rules_dir(), config.sessions)
    opts = ReplayOptions(files=files, **kw)  # type: ignore[arg-type]
    return await run_replay(opts, config, store, rules)


def _jsonl(alerts: list[Alert], path: Path) -> bytes:
    write_jsonl(alerts, path)
    return path.read_bytes()


@pytest.mark.shared
async def test_defect4_files_split_by_symbol_give_the_alerts_of_one_file(
    store: Store, tmp_path: Path
) -> None:
    ep = shared_path("data", "history", "episode-312.csv")
    one = await _replay(store, [ep])
    assert (
        len([a for a in one.alerts if a.kind == "firing"]) >= 3
    )  # the shipped rules on 312 (4 since the issue-10 rules)
    rows = _rows(ep)
    symbols = sorted({r.split(",")[1] for r in rows})
    parts = [
        _write(tmp_path / f"part{i}.csv", [r for r in rows if r.split(",")[1] in symbols[i::3]])
        for i in range(3)
    ]
    three = await _replay(store, parts)
    assert three.stats.too_old == 0, "rows of a later file were taken as older than history"
    assert _jsonl(three.alerts, tmp_path / "three.jsonl") == _jsonl(one.alerts, tmp_path / "one")


@pytest.mark.shared
async def test_defect4_a_row_stamped_2099_is_rejected_and_later_rows_still_count(
    store: Store, tmp_path: Path
) -> None:
    ep = shared_path("data", "history", "episode-312.csv")
    clean = await _replay(store, [ep])
    rows = _rows(ep)
    rows.insert(100, "2099-01-01T00:00:00Z,BTC/USD,7000")  # line 102 of the file
    bad = await _replay(store, [_write(tmp_path / "typo.csv", rows)])
    assert bad.rejects.counts == {"time in the future": 1}
    assert bad.rejects.examples["time in the future"] == ["typo.csv:102: '2099-01-01T00:00:00Z'"]
    assert bad.stats.too_old == 0
    assert bad.ticks_read == clean.ticks_read
    assert _jsonl(bad.alerts, tmp_path / "bad.jsonl") == _jsonl(clean.alerts, tmp_path / "ok")


@pytest.mark.shared
async def test_a_file_out_of_time_order_is_sorted_on_read_and_the_summary_says_so(
    store: Store, tmp_path: Path
) -> None:
    ep = shared_path("data", "history", "episode-312.csv")
    clean = await _replay(store, [ep])
    rows = _rows(ep)
    # the file concatenated from per-symbol files, the usual way to get one out of order
    rows.sort(key=lambda r: r.split(",")[1])
    mixed = await _replay(store, [_write(tmp_path / "by-symbol.csv", rows)])
    assert any(
        "by-symbol.csv is not in time order" in n and "sorted on read" in n for n in mixed.notes
    )
    assert mixed.stats.too_old == 0 and mixed.stats.late == clean.stats.late
    assert _jsonl(mixed.alerts, tmp_path / "m.jsonl") == _jsonl(clean.alerts, tmp_path / "c")


class _Crash(Exception):
    pass


@pytest.mark.shared
async def test_resume_over_several_files_gives_the_alerts_of_an_uninterrupted_run(
    store: Store, tmp_path: Path
) -> None:
    ep = shared_path("data", "history", "episode-312.csv")
    rows = _rows(ep)
    rng = random.Random(312)
    parts: list[list[str]] = [[], [], []]
    for r in rows:  # interleaved at random: every file has every symbol now and then
        parts[rng.randrange(3)].append(r)
    files = [_write(tmp_path / f"p{i}.csv", p) for i, p in enumerate(parts)]
    straight = await _replay(store, files)
    firing = [a for a in straight.alerts if a.kind == "firing"]
    assert len(firing) >= 3  # crash points below need several alerts (3 episodes on 312)
    for crash_after in (1, 3, len(straight.alerts) - 1):
        seen: list[Alert] = []

        def on_alert(a: Alert, seen: list[Alert] = seen, n: int = crash_after) -> None:
            seen.append(a)
            if len(seen) == n:  # the alert and its checkpoint are committed: now die
                raise _Crash

        with pytest.raises(_Crash):
            await _replay(store, files, on_alert=on_alert, checkpoint_every=0.0)
        resumed = await _replay(store, files, resume=True)
        assert resumed.resumed_from is not None and "p0.csv after" in resumed.resumed_from
        assert resumed.ticks_read < straight.ticks_read
        assert _jsonl(resumed.alerts, tmp_path / "r.jsonl") == _jsonl(
            straight.alerts, tmp_path / "s.jsonl"
        ), f"resumed after alert {crash_after}"


async def test_an_alert_raised_by_the_last_evaluation_is_committed(
    store: Store, tmp_path: Path
) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "drop.toml").write_text(
        '[[rule]]\nid = "drop"\npattern = "custom"\nseverity = "info"\n'
        'when = \'ret("BTC/USD", "30m") < -10\'\nfor = "0s"\ncooldown = "1h"\n'
        'summary = "BTC down"\n'
    )
    rules = load_rules(rules_dir, Config().sessions)
    calm = [f"2020-03-12T{9 + m // 60:02d}:{m % 60:02d}:00Z,BTC/USD,100" for m in range(0, 66, 5)]
    data = _write(tmp_path / "h.csv", [*calm, "2020-03-12T10:11:00Z,BTC/USD,80"])
    r = await run_replay(ReplayOptions(files=[data]), Config(), store, rules)
    assert [a.id for a in r.alerts] == ["drop@2020-03-12T10:11:00Z"]  # raised by finish()
