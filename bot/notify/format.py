"""Alert text for each platform: Telegram HTML and Discord embeds, with plain-text fallbacks.

Everything that comes from an alert (rule names, summaries, value names) is treated as hostile:
escaped for Telegram HTML, markdown-escaped for Discord, and never allowed to mention anyone.
Each renderer returns pieces that already respect the platform's limits.
"""

from __future__ import annotations

import html
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.core.durations import format_duration
from bot.core.models import Alert, AlertKind
from bot.notify.heartbeat import is_heartbeat

TG_TEXT_LIMIT = 4096
TG_CAPTION_LIMIT = 1024
DC_CONTENT_LIMIT = 2000
DC_EMBED_TITLE = 256
DC_EMBED_DESCRIPTION = 4096
DC_FIELD_NAME = 256
DC_FIELD_VALUE = 1024
DC_FIELDS = 25
DC_FOOTER = 2048
DC_EMBED_TOTAL = 6000

SEVERITY_ICON = {"critical": "🔴", "warning": "🟠", "info": "🔵"}
RESOLVED_ICON = "✅"
HEARTBEAT_ICON = "💓"
#: Embed colours: red, orange, blue; green for resolved.
SEVERITY_COLOUR = {"critical": 0xE74C3C, "warning": 0xF39C12, "info": 0x3498DB}
RESOLVED_COLOUR = 0x2ECC71
_MAX_NAME = 80  # rule / value names are trimmed to this many characters


def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units); never less than len()."""
    return len(text.encode("utf-16-le")) // 2


def trim(text: str, limit: int, *, measure: Any = len) -> str:
    """`text` cut to `limit` (by `measure`) with an ellipsis when cut."""
    if measure(text) <= limit:
        return text
    lo, hi = 0, len(text)
    while lo < hi:  # longest prefix that fits together with the ellipsis
        mid = (lo + hi + 1) // 2
        if measure(text[:mid] + "…") <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + "…"


def fmt_number(v: float | None) -> str:
    """A value as a person reads it: thousands separated, about five significant digits."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.2f}"
    if a >= 1:
        return f"{v:.4g}" if a < 10 else f"{v:.2f}"
    if a == 0:
        return "0"
    return f"{v:.4g}"


def fmt_times(ts: float, zone: str) -> tuple[str, str | None]:
    """(UTC text, local text or None when the zone is UTC)."""
    utc = datetime.fromtimestamp(ts, UTC)
    u = utc.strftime("%Y-%m-%d %H:%M:%S UTC")
    if zone in ("UTC", "Etc/UTC"):
        return u, None
    loc = utc.astimezone(ZoneInfo(zone))
    return u, f"{loc.strftime('%Y-%m-%d %H:%M:%S %Z')} ({zone})"


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a message: the formatted form and the plain-text form of the same content."""

    html: str
    plain: str


STRESS_KEY = "stress"  # the engine's stress gauge (bot.engine.episodes.stress_values)
LIKE_PREFIX = "like_"  # like_<episode id>: similarity to the closest past episode


def _gauge_key(k: str) -> bool:
    return k == STRESS_KEY or k.startswith(LIKE_PREFIX)


def _value_lines(alert: Alert) -> list[tuple[str, str]]:
    return [
        (trim(str(k), _MAX_NAME), fmt_number(v))
        for k, v in alert.values.items()
        if not _gauge_key(str(k))
    ]


def stress_text(alert: Alert) -> str | None:
    """The gauge as a trader reads it: "Stress 79/100 · looks 0.62 like gfc_2008", from the
    `stress` and `like_<episode>` values the engine puts in every alert (None without them)."""
    score = alert.values.get(STRESS_KEY)
    like = [
        (str(k)[len(LIKE_PREFIX) :], v)
        for k, v in alert.values.items()
        if str(k).startswith(LIKE_PREFIX) and v is not None
    ]
    parts = []
    if score is not None and math.isfinite(score):
        parts.append(f"Stress {score:.0f}/100")
    parts += [f"looks {v:.2f} like {trim(name, _MAX_NAME)}" for name, v in like]
    return " · ".join(parts) or None


def _headline(alert: Alert) -> tuple[str, str]:
    """Icon and title. A kind other than firing and resolved (escalated, reminder, or one this
    version does not know) is named in the title beside the severity."""
    sev = alert.severity.lower()
    rule = trim(alert.rule, _MAX_NAME)
    if is_heartbeat(alert):
        return HEARTBEAT_ICON, "HEARTBEAT · stressbot is alive"
    if alert.kind is AlertKind.RESOLVED:
        return RESOLVED_ICON, f"RESOLVED · {rule}"
    icon = SEVERITY_ICON.get(sev, "⚪")
    kind = str(getattr(alert.kind, "value", alert.kind))
    if kind != AlertKind.FIRING.value:
        return icon, f"{sev.upper()} · {trim(kind.upper(), _MAX_NAME)} · {rule}"
    return icon, f"{sev.upper()} · {rule}"


def alert_lines(alert: Alert, zone: str, note: str | None = None) -> list[Line]:
    """The content of an alert message, one self-contained line at a time."""
    e = html.escape
    icon, head = _headline(alert)
    lines = [Line(f"{icon} <b>{e(head)}</b>", f"{icon} {head}")]
    pat = trim(alert.pattern, _MAX_NAME)
    lines.append(Line(f"Pattern: <i>{e(pat)}</i>", f"Pattern: {pat}"))
    for para in alert.summary.splitlines() or [""]:
        lines.append(Line(e(para), para))
    gauge = stress_text(alert)
    if gauge:
        lines.append(Line(f"📈 {e(gauge)}", f"📈 {gauge}"))
    vals = _value_lines(alert)
    if vals:
        lines.append(Line("<b>Numbers</b>", "Numbers"))
        for k, v in vals:
            lines.append(Line(f"• {e(k)}: <code>{e(v)}</code>", f"• {k}: {v}"))
    if alert.symbols:
        syms = trim(", ".join(alert.symbols), 200)
        win = f" over {format_duration(alert.window)}" if alert.window > 0 else ""
        lines.append(Line(f"Series: {e(syms)}{e(win)}", f"Series: {syms}{win}"))
    u, loc = fmt_times(alert.ts, zone)
    lines.append(Line(f"🕒 {e(u)}", f"🕒 {u}"))
    if loc:
        lines.append(Line(f"🕒 {e(loc)}", f"🕒 {loc}"))
    aid = trim(alert.id, 120)
    lines.append(Line(f"id: <code>{e(aid)}</code>", f"id: {aid}"))
    if note:
        lines.append(Line(f"<i>{e(note)}</i>", note))
    return lines


def _split_long_line(line: Line, limit: int) -> list[Line]:
    """Cut a line whose plain text is too long into pieces (raw text cut, then escaped)."""
    if tg_len(line.html) <= limit and tg_len(line.plain) <= limit:
        return [line]
    out: list[Line] = []
    raw = line.plain
    # escaping grows a character to at most 5 ("&amp;"), so pieces of limit // 5 always fit
    step = max(1, limit // 5)
    for i in range(0, len(raw), step):
        piece = raw[i : i + step]
        out.append(Line(html.escape(piece), piece))
    return out


def group_lines(lines: list[Line], limit: int) -> list[list[Line]]:
    """Group lines into as few messages as possible, each within `limit` (UTF-16 units) in both
    its formatted and its plain form. Only plain text is ever cut, never a tag or an entity."""
    pieces: list[Line] = []
    for ln in lines:
        pieces.extend(_split_long_line(ln, limit))
    groups: list[list[Line]] = []
    cur: list[Line] = []
    size = 0
    for ln in pieces:
        n = max(tg_len(ln.html), tg_len(ln.plain))
        add = n + (1 if cur else 0)
        if cur and size + add > limit:
            groups.append(cur)
            cur, size, add = [], 0, n
        cur.append(ln)
        size += add
    if cur:
        groups.append(cur)
    return groups


def split_lines(lines: list[Line], limit: int, *, html_mode: bool = True) -> list[str]:
    """Messages within `limit`, formatted (html_mode) or plain."""
    return [
        "\n".join(ln.html if html_mode else ln.plain for ln in g) for g in group_lines(lines, limit)
    ]


# ---- Discord ---------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\*_~`|>#\[\]()<:-])")


def md_escape(text: str) -> str:
    """Escape Discord markdown so alert text shows literally (mentions are blocked separately)."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def discord_embed(
    alert: Alert, zone: str, *, with_image: bool, note: str | None = None
) -> dict[str, Any]:
    """One embed, coloured by severity, within every embed limit."""
    icon, head = _headline(alert)
    colour = (
        RESOLVED_COLOUR
        if alert.kind is AlertKind.RESOLVED
        else SEVERITY_COLOUR.get(alert.severity.lower(), 0x95A5A6)
    )
    u, loc = fmt_times(alert.ts, zone)
    desc_parts = [md_escape(alert.summary)]
    gauge = stress_text(alert)
    if gauge:
        desc_parts.append(md_escape(gauge))
    if alert.symbols:
        win = f" over {format_duration(alert.window)}" if alert.window > 0 else ""
        desc_parts.append(md_escape(f"Series: {', '.join(alert.symbols)}{win}"))
    if note:
        desc_parts.append(f"*{md_escape(note)}*")
    description = trim("\n".join(desc_parts), 3000)
    fields: list[dict[str, Any]] = []
    vals = _value_lines(alert)
    shown = vals if len(vals) <= DC_FIELDS - 2 else vals[: DC_FIELDS - 3]
    for k, v in shown:
        fields.append(
            {"name": trim(md_escape(k), DC_FIELD_NAME), "value": f"`{v}`", "inline": True}
        )
    if len(shown) < len(vals):
        fields.append(
            {"name": "…", "value": f"{len(vals) - len(shown)} more values", "inline": False}
        )
    fields.append({"name": "Time", "value": u + (f"\n{loc}" if loc else ""), "inline": False})
    embed: dict[str, Any] = {
        "title": trim(f"{icon} {head}", DC_EMBED_TITLE),
        "description": description,
        "color": colour,
        "fields": fields,
        "footer": {"text": trim(f"{alert.pattern} · id {alert.id}", 200)},
        "timestamp": datetime.fromtimestamp(alert.ts, UTC).isoformat(),
    }
    if with_image:
        embed["image"] = {"url": "attachment://chart.png"}
    # the whole embed must stay within 6000 characters: shorten the description if needed
    total = _embed_chars(embed)
    if total > DC_EMBED_TOTAL:
        embed["description"] = trim(description, max(0, len(description) - (total - 5990)))
    return embed


def _embed_chars(embed: dict[str, Any]) -> int:
    n = len(embed.get("title", "")) + len(embed.get("description", ""))
    n += len(embed.get("footer", {}).get("text", ""))
    for f in embed.get("fields", []):
        n += len(f["name"]) + len(f["value"])
    return n


def discord_plain(alert: Alert, zone: str, note: str | None = None) -> list[str]:
    """Plain content messages (markdown escaped) for when an embed is rejected."""
    lines = [
        Line(md_escape(ln.plain), md_escape(ln.plain)) for ln in alert_lines(alert, zone, note)
    ]
    return split_lines(lines, DC_CONTENT_LIMIT, html_mode=False)
