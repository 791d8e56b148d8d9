"""`--log-format json`: one JSON object a line (ts UTC, level, logger, message, extra fields),
with the bot token redacted as in the text log."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest

from bot.cli.logs import JsonFormatter, setup_logging
from bot.cli.main import build_parser
from bot.notify.base import install_redaction
from tests.conftest import ROOT

TOKEN = "7654321:AAHsecretSECRETsecret-token_abc"


@pytest.fixture
def root_json() -> Iterator[io.StringIO]:
    """The root logger as `stressbot --log-format json` sets it up, writing to a buffer."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    noisy = {n: list(logging.getLogger(n).filters) for n in ("httpx", "telegram", "aiohttp")}
    root.handlers = []
    buf = io.StringIO()
    stderr, sys.stderr = sys.stderr, buf
    try:
        setup_logging(logging.INFO, "json")
    finally:
        sys.stderr = stderr
    yield buf
    root.handlers, root.level = saved
    for n, filters in noisy.items():
        logging.getLogger(n).filters = filters


def _lines(buf: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in buf.getvalue().splitlines()]


def test_the_option_is_global() -> None:
    args = build_parser().parse_args(["--log-format", "json", "status"])
    assert args.log_format == "json"
    assert build_parser().parse_args(["status"]).log_format == "text"


def test_one_object_a_line_with_utc_time_level_logger_message_and_extras(
    root_json: io.StringIO,
) -> None:
    log = logging.getLogger("bot.test.json")
    before = datetime.now(UTC)
    log.info("engine: resumed at %s", "12-0", extra={"feed": "kraken", "n": 3})
    log.warning("two\nlines")
    (first, second) = _lines(root_json)
    assert first["level"] == "INFO" and first["logger"] == "bot.test.json"
    assert first["message"] == "engine: resumed at 12-0"
    assert first["feed"] == "kraken" and first["n"] == 3
    ts = str(first["ts"])
    assert ts.endswith("Z")
    when = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert when.utcoffset() is not None and abs((when - before).total_seconds()) < 60
    assert second["message"] == "two\nlines" and len(root_json.getvalue().splitlines()) == 2


def test_the_token_is_redacted_in_message_args_exception_and_extras(
    root_json: io.StringIO,
) -> None:
    install_redaction([TOKEN])  # what the notifier does before any client exists
    log = logging.getLogger("bot.test.json")
    url = f"https://api.telegram.org/bot{TOKEN}/sendMessage"
    log.info("POST %s", url, extra={"url": url, "request": {"url": url}})
    try:
        raise RuntimeError(f"connect failed for {url}")
    except RuntimeError:
        log.exception("send failed")
    out = root_json.getvalue()
    assert TOKEN not in out
    first, second = _lines(root_json)
    assert first["message"] == "POST https://api.telegram.org/bot***/sendMessage"
    assert first["url"] == "https://api.telegram.org/bot***/sendMessage"
    assert "bot***" in str(first["request"])
    assert "RuntimeError: connect failed for https://api.telegram.org/bot***" in str(second["exc"])


def test_a_value_json_cannot_hold_is_written_as_text() -> None:
    rec = logging.LogRecord("x", logging.INFO, "f", 1, "m", None, None)
    rec.obj = object()
    doc = orjson.loads(JsonFormatter().format(rec))
    assert str(doc["obj"]).startswith("<object object")


def test_a_real_stressbot_process_writes_json_lines_to_stderr() -> None:
    # with -v, asyncio logs its selector at DEBUG through the root logger's handler
    r = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--log-format", "json", "-v", "rules", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    logged = [orjson.loads(x) for x in r.stderr.splitlines()]  # every stderr line is JSON
    assert {"level": "DEBUG", "logger": "asyncio"}.items() <= logged[0].items()
    assert all({"ts", "level", "logger", "message"} <= set(d) for d in logged)
