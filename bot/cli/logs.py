"""Log output of the `stressbot` command: text for people, or one JSON object a line.

``--log-format json`` writes each record as one line::

    {"ts": "2026-12-02T12:40:05.123Z", "level": "INFO", "logger": "bot.runtime.live",
     "message": "engine: leader (lease 3:host/42/ab12cd)", "exc": "Traceback ...", ...}

``ts`` is the record's creation time in UTC (ISO 8601, milliseconds, ``Z``); ``exc`` is there
when the record carries an exception; every attribute a caller passed in ``extra={...}`` is
added under its own name (values JSON cannot hold are written as their ``str``). Secrets are
redacted before the formatter sees the record: :func:`bot.notify.base.install_redaction` puts
its filter on every handler of the root logger, the JSON one included, and the filter also
rewrites the exception text and string ``extra`` values (see ``tests/test_json_logs.py``).

The line is built with ``logging.Formatter``'s own hooks (``formatException``), as the
standard library's logging cookbook does for structured output ("Implementing structured
logging", docs.python.org/3/howto/logging-cookbook.html); orjson writes the JSON.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

#: The attributes every LogRecord has; anything else on a record came from ``extra``.
STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """What a caller added to the record with ``extra={...}``."""
    return {k: v for k, v in vars(record).items() if k not in STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        for k, v in extra_fields(record).items():
            doc.setdefault(k, v)
        return orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def setup_logging(level: int, fmt: str = "text") -> None:
    """Log to stderr at `level`, as text or JSON lines (like ``logging.basicConfig``, a no-op
    when the root logger already has handlers, e.g. under pytest)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
