"""`kill -9` of `stressbot replay` at random points, each time resumed with `--resume` on the
same Redis: the JSONL output (ids, summaries, values, chart points) equals an uninterrupted
run's, byte for byte (issue 8, must show). On the dev file, and on the dev file split into
three files (written to tmp_path, never kept), against the one-file run.

The kill targets are drawn at random from a fixed seed, so a failure can be repeated; the
kill itself lands anywhere in the chunk after the target (timing). STRESSBOT_KILL_SEED=N
draws other targets (`random` for a fresh seed each run).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis

from tests.conftest import REDIS_URL, ROOT, shared_path

KILLS = 3
RATE = "50000"  # ticks/s while a kill is due: the dev file then takes ~3 s


def _cli(prefix: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    cfg = tmp_path / f"{prefix.replace(':', '-')}.toml"
    cfg.write_text(f'[redis]\nprefix = "{prefix}"\n[engine]\ncheckpoint_every = "0.05s"\n')
    env = {**os.environ, "REDIS_URL": REDIS_URL}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "replay", *args, "--config", str(cfg), "--quiet"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def _taken(redis: Redis, prefix: str) -> int | None:
    """Rows the checkpoint accounts for (None: no checkpoint; -1: the end)."""
    pos = await redis.hget(f"{prefix}:replay:checkpoint", "position")
    if pos is None:
        return None
    if pos == b"end":
        return -1
    return sum(int(x) for x in pos.split(b":")[1].split(b","))


def _split(src: Path, tmp_path: Path, rng: random.Random) -> list[Path]:
    import gzip

    with gzip.open(src, "rt") as fh:
        lines = fh.read().splitlines()
    parts: list[list[str]] = [[], [], []]
    home: dict[str, int] = {}
    for line in lines[1:]:  # by symbol, and BTC (the busiest) interleaved over all three
        sym = line.split(",")[1]
        i = rng.randrange(3) if sym == "BTC/USD" else home.setdefault(sym, len(home) % 3)
        parts[i].append(line)
    out = []
    for i, p in enumerate(parts):
        f = tmp_path / f"dev-part{i}.csv"
        f.write_text(lines[0] + "\n" + "\n".join(p) + "\n")
        out.append(f)
    return out


@pytest.mark.shared
@pytest.mark.parametrize("layout", ["one file", "three files"])
async def test_kill_9_at_random_points_then_resume_gives_the_same_jsonl_byte_for_byte(
    redis: Redis, tmp_path: Path, layout: str
) -> None:
    dev = shared_path("data", "history", "dev-2019-2021.csv.gz")
    env_seed = os.environ.get("STRESSBOT_KILL_SEED", "1")
    seed = time.time_ns() % 2**32 if env_seed == "random" else int(env_seed)
    rng = random.Random(seed)
    files = (
        [str(dev)]
        if layout == "one file"
        else [str(f) for f in _split(dev, tmp_path, random.Random(seed + 1))]
    )
    p_full, p_kill = f"test:{uuid.uuid4().hex[:8]}", f"test:{uuid.uuid4().hex[:8]}"
    want_out, got_out = tmp_path / "full.jsonl", tmp_path / "resumed.jsonl"
    try:
        full = _cli(p_full, tmp_path, str(dev), "--jsonl", str(want_out))
        _, err = await asyncio.to_thread(full.communicate, timeout=180)
        assert full.returncode == 0, err
        want = want_out.read_bytes()
        assert want.count(b"\n") > 10

        total = 146_452
        points = sorted(rng.sample(range(total // 10, total * 9 // 10, 1000), KILLS))
        resumed = False
        for target in points:
            args = [*files, "--rate", RATE] + (["--resume"] if resumed else [])
            proc = _cli(p_kill, tmp_path, *args)
            for _ in range(2400):
                taken = await _taken(redis, p_kill)
                if taken is not None and (taken >= target or taken < 0):
                    break
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.02)
            assert proc.poll() is None, f"the replay ended before row {target:,} (seed {seed})"
            await asyncio.sleep(rng.uniform(0, 0.06))  # anywhere inside the next chunk
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            resumed = True

        last = _cli(p_kill, tmp_path, *files, "--resume", "--jsonl", str(got_out))
        out, err = await asyncio.to_thread(last.communicate, timeout=180)
        assert last.returncode == 0, err
        assert "resumed from" in out
        got = got_out.read_bytes()
        assert got == want, (
            f"{layout}: killed at rows {points} (seed {seed}, STRESSBOT_KILL_SEED to repeat): "
            f"{_first_difference(want, got)}"
        )
    finally:
        for p in (p_full, p_kill):
            keys = [k async for k in redis.scan_iter(match=f"{p}:*")]
            if keys:
                await redis.delete(*keys)


def _first_difference(want: bytes, got: bytes) -> str:
    a, b = want.splitlines(), got.splitlines()
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            j = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
            return (
                f"alert {i + 1} differs at byte {j}: "
                f"{x[max(j - 80, 0) : j + 80]!r} vs {y[max(j - 80, 0) : j + 80]!r}"
            )
    return f"{len(a)} alerts uninterrupted, {len(b)} after the kills"
