"""Durations as people write them in config and rule files: '90s', '5m', '4h', '5d', '2w'."""

from __future__ import annotations

import re

from bot.core.errors import DurationError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")


def parse_duration(text: str) -> float:
    """Return the duration in seconds. Accepts compound forms such as '1h30m'."""
    s = text.strip().lower()
    if not _WHOLE.fullmatch(s):
        raise DurationError(
            f"expected a duration like '30s', '15m', '4h', '5d' or '1h30m', got {text!r}"
        )
    return float(sum(float(n) * _UNITS[u] for n, u in _PART.findall(s)))


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for messages: 86400 -> '1d'."""
    if seconds <= 0:
        return "0s"
    out = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            n, rest = divmod(rest, size)
            out.append(f"{n}{unit}")
    return "".join(out)
