"""The one parser of the HTTP ``Retry-After`` header (RFC 9110 §10.2.3).

``Retry-After = HTTP-date / delay-seconds``. delay-seconds is a non-negative decimal integer
(a fraction such as ``"1.5"`` is accepted too: some servers send one). HTTP-date is any of
the three forms RFC 9110 §5.6.7 says a recipient must accept: IMF-fixdate
(``Sun, 06 Nov 1994 08:49:37 GMT``), the obsolete RFC 850 form (``Sunday, 06-Nov-94 08:49:37
GMT``) and asctime (``Sun Nov  6 08:49:37 1994``); all are read by the standard library's
:func:`email.utils.parsedate_to_datetime`, and a date without a zone is taken as UTC (HTTP
dates are always GMT). A date in the past means "now" (0.0).

Anything else (absent, empty, negative, ``inf``/``nan``, words) is no hint at all: None, and
the caller falls back to its own backoff.
"""

from __future__ import annotations

import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value; None when absent or not valid.

    `now` (epoch seconds, default the current time) is what an HTTP-date is measured from.
    """
    if value is None:
        return None
    v = value.strip()
    if not v:
        return None
    if _DELAY_SECONDS.fullmatch(v):
        return float(v)
    try:
        when = parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


__all__ = ["parse_retry_after"]
