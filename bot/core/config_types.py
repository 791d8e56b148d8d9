"""What every config section shares: the strict base model, durations, IANA time zones, the
display section, and error messages that name file, key and expectation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DisplayConfig(Strict):
    timezone: Zone = "UTC"  # the zone people see times in, besides UTC


def format_validation_error(path: Path | str, e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling against config.example.toml)"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and err["type"] not in ("missing",):
                msg += f" (got {err['input']!r})"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)
