"""Field types shared by every config section: durations and IANA time zones."""

from __future__ import annotations

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator

from bot.core.durations import parse_duration


def _duration(v: Any) -> float:
    if isinstance(v, bool):
        raise ValueError("expected a duration string such as '30s' or '4h', got a boolean")
    if isinstance(v, int | float):
        if v < 0:
            raise ValueError("expected a duration of zero or more seconds")
        return float(v)
    if isinstance(v, str):
        return parse_duration(v)
    raise ValueError(f"expected a duration like '30s' or '4h', got {type(v).__name__}")


def _zone(v: Any) -> Any:
    if v is None:
        return None
    try:
        ZoneInfo(str(v))
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"expected an IANA time zone such as 'Europe/London', got {v!r}") from e
    return str(v)


#: Seconds; written in files as '30s', '5m', '4h', '2d' (a bare number means seconds).
Duration = Annotated[float, BeforeValidator(_duration)]
#: An IANA zone name, checked against the zone database.
Zone = Annotated[str, BeforeValidator(_zone)]
OptZone = Annotated[str | None, BeforeValidator(_zone)]
