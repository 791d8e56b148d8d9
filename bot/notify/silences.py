"""Silences, as Alertmanager has them: matchers, a start and an end, an author and a comment.

A silence is the shape of Alertmanager's API v2 silence (``id``, ``matchers`` of ``{name,
value, isRegex, isEqual}``, ``startsAt``, ``endsAt``, ``createdBy``, ``comment``). Its
matchers read an alert's ``rule``, ``pattern`` and ``severity``, with Alertmanager's four
operators: ``=``, ``!=``, ``=~``, ``!~``; a regular expression is anchored at both ends, as in
Prometheus and Alertmanager (``rule=~btc.*`` matches ``btc_crash``, ``rule=~crash`` does not).
Every matcher must match (AND); a silence without matchers silences everything. It is active
from ``starts`` (inclusive) to ``ends`` (exclusive).

Regular expressions come from users (``stressbot silence add``, ``/silence``) and are matched
by the notifier for every alert, with Python's backtracking ``re``, so a pattern that could
backtrack for ever (``(a+)+$``: exponential; ``.*.*.*.*x``: a high power of the length) would
stall delivery. They are therefore guarded when a matcher is made (parsed, or read back from
Redis), not timed when matched:

* the pattern is at most :data:`MAX_PATTERN` characters and is parsed by ``re``'s own parser
  (so a bad one is refused with ``re``'s reason, e.g. ``rule=~(``: "missing ), unterminated
  subpattern");
* a quantifier (``*``, ``+``, ``?``, ``{m,n}``) may only repeat what matches in one way: a
  character, a class, or a fixed sequence of them (``[a-z]+``, ``(ab)*``, ``.*``), never a
  group holding another quantifier or an alternation (``(a+)+``, ``(a|ab)*``): nested
  quantifiers are refused;
* the ways a backtracking matcher can try, over a value of :data:`MAX_VALUE` characters (each
  quantifier: its repeat counts; each alternation: its branches; multiplied along the pattern)
  are at most :data:`MAX_WAYS`: ``.*crash.*`` (129 x 129 ways) or ``(btc|eth)_.*_(crash|spike)``
  pass, ``.*a.*b.*c`` (129^3) is refused; backreferences, lookarounds and conditionals are
  refused too (Alertmanager's RE2 has none of them either);
* a value longer than :data:`MAX_VALUE` characters never satisfies a regular-expression matcher
  (``=~`` nor ``!~``), so such an alert is delivered rather than held back. Rule ids are at most
  64 characters, patterns and severities shorter.

A silence stored by an older version whose regular expression fails these checks cannot be
read (it is logged and removed, as any unreadable silence), so it cannot stall the notifier.

``/mute RULE|all DURATION`` is one kind of silence (``kind = "mute"``): one ``rule=RULE``
matcher, or none for ``all``; ``/unmute`` ends those, and ``mutes()`` reads them as the rule ->
expiry map the mute commands always had. Mutes of older versions (the ``notify:mutes`` hash)
become such silences the first time silences are read.

What a silence suppresses is acknowledged without sending (never delivered later: like
Alertmanager, a silence ending does not replay what it held back) and recorded, per
destination, in the ``notify:suppressed`` stream (capped at :data:`SUPPRESSED_MAXLEN`),
with a count per silence: ``stressbot silence list --suppressed`` and ``/silences`` show them.
Removing a silence (``silence rm``, ``/unsilence``, ``/unmute``, the removal of expired ones)
removes its count with it; its entries in the suppressed stream stay, as the capped history.

Keys (under the store prefix ``{p}``):

``{p}:notify:silences``          hash    silence id -> JSON silence
``{p}:notify:silenced``          hash    silence id -> alerts it suppressed (all destinations)
``{p}:notify:suppressed``        stream  {dest, alert_id, rule, severity, silence, at, summary}
``{p}:notify:mutes``             hash    (older versions) rule id or ``*`` -> expiry
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import orjson

from bot.core.errors import StressbotError
from bot.core.models import Alert
from bot.store.redis_store import Store

if TYPE_CHECKING:
    import sre_parse as _re_parser
else:  # the same parser re.compile uses (sre_parse is its deprecated alias since 3.11)
    from re import _parser as _re_parser

log = logging.getLogger(__name__)

#: What a silence's matchers can read of an alert.
FIELDS = ("rule", "pattern", "severity")
OPS = ("=~", "!~", "!=", "=")  # longest first: "rule!=x" is not "rule!" = "x"
ALL = "*"
MUTE, SILENCE = "mute", "silence"
SUPPRESSED_MAXLEN = 10_000
#: Expired silences are kept (listable) this long, then removed, as Alertmanager's retention.
EXPIRED_KEEP = 5 * 86400.0
_MATCHER = re.compile(r"^(rule|pattern|severity)(=~|!~|!=|=)(.*)$", re.S)
#: The guard of user regular expressions (see the module docstring).
MAX_PATTERN = 256
MAX_VALUE = 128
MAX_WAYS = 100_000


class SilenceError(StressbotError):
    """A silence cannot be made as asked; the message says why."""


@dataclass(slots=True, frozen=True)
class Matcher:
    name: str  # one of FIELDS
    op: str  # one of OPS
    value: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """``rule=btc_crash``, ``severity!=info``, ``pattern=~crypto.*``, ``rule!~feed:.*``."""
        m = _MATCHER.match(text.strip())
        if m is None:
            raise SilenceError(
                f"matcher {text[:64]!r}: expected NAME OP VALUE with NAME one of "
                f"{', '.join(FIELDS)} and OP one of =, !=, =~, !~ (e.g. rule=btc_crash)"
            )
        name, op, value = m.groups()
        return cls(name, op, value)

    def __post_init__(self) -> None:
        if self.regex:
            try:
                _compiled(self.value)
            except _Unsafe as e:
                raise SilenceError(f"matcher {str(self)[:64]!r}: {e}") from None

    @property
    def regex(self) -> bool:
        return self.op in ("=~", "!~")

    @property
    def equal(self) -> bool:
        return self.op in ("=", "=~")

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if not self.regex:
            return (got == self.value) == self.equal
        if len(got) > MAX_VALUE:
            return False  # beyond the guard's bound: this matcher holds nothing back
        return (_compiled(self.value).fullmatch(got) is not None) == self.equal

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.regex,
            "isEqual": self.equal,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Matcher:
        regex, equal = bool(d.get("isRegex")), bool(d.get("isEqual", True))
        op = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
        return cls(str(d["name"]), op, str(d["value"]))


class _Unsafe(ValueError):
    """A regular expression the guard refuses; the message says why."""


_ONE_CHAR = frozenset({_re_parser.LITERAL, _re_parser.NOT_LITERAL, _re_parser.ANY, _re_parser.IN})
_REPEATS = frozenset({_re_parser.MAX_REPEAT, _re_parser.MIN_REPEAT, _re_parser.POSSESSIVE_REPEAT})


@lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    """`pattern` compiled, once it passed the guard; raises _Unsafe with the reason."""
    if len(pattern) > MAX_PATTERN:
        raise _Unsafe(f"a regular expression is at most {MAX_PATTERN} characters")
    try:
        tree = _re_parser.parse(pattern)
        compiled = re.compile(pattern)
    except re.error as e:
        raise _Unsafe(f"bad regular expression: {e}") from None
    if _ways(tree) > MAX_WAYS:
        raise _Unsafe(
            f"regular expression too costly to match: more than {MAX_WAYS:,} ways to try on a "
            f"{MAX_VALUE}-character value; use fewer quantifiers (.*, +) or alternatives"
        )
    return compiled


def _ways(items: Any) -> int:
    """An upper bound on the ways a backtracking matcher can try to match `items` (parsed by
    ``re``'s parser) against a value of MAX_VALUE characters; raises _Unsafe for a construct
    whose cost it does not bound."""
    ways = 1
    for op, av in items:
        if op in _ONE_CHAR or op is _re_parser.AT:
            continue
        if op is _re_parser.SUBPATTERN:
            ways *= _ways(av[3])
        elif op is _re_parser.ATOMIC_GROUP:
            ways *= _ways(av)
        elif op is _re_parser.BRANCH:
            ways *= sum(_ways(b) for b in av[1])
        elif op in _REPEATS:
            low, high, body = av
            width = _fixed_width(body)
            if width is None:
                raise _Unsafe(
                    "nested quantifier: *, +, ? and {m,n} may only repeat a character, a class "
                    "or a fixed sequence, not a group with its own quantifier or alternatives "
                    "(e.g. (a+)+ or (a|ab)*), which can take exponential time"
                )
            ways *= max(1, min(high, MAX_VALUE // width) - low + 1)
        else:  # GROUPREF, GROUPREF_EXISTS, ASSERT, ASSERT_NOT
            raise _Unsafe(
                "backreferences, lookarounds and conditionals are not supported in silences "
                "(as in Alertmanager)"
            )
        if ways > MAX_WAYS:
            return ways
    return ways


def _fixed_width(items: Any) -> int | None:
    """How many characters `items` match when they match in exactly one way (no alternation,
    no quantifier but an exact count); None when they may match in several, or match nothing."""
    width = 0
    for op, av in items:
        if op in _ONE_CHAR:
            width += 1
        elif op is _re_parser.AT:
            continue
        elif op in (_re_parser.SUBPATTERN, _re_parser.ATOMIC_GROUP):
            w = _fixed_width(av[3] if op is _re_parser.SUBPATTERN else av)
            if w is None:
                return None
            width += w
        elif op in _REPEATS and av[0] == av[1]:
            w = _fixed_width(av[2])
            if w is None:
                return None
            width += w * av[0]
        else:
            return None
    return width or None


def labels_of(alert: Alert) -> dict[str, str]:
    return {"rule": alert.rule, "pattern": alert.pattern, "severity": alert.severity.lower()}


@dataclass(slots=True)
class Silence:
    id: str
    matchers: list[Matcher]
    starts: float  # epoch seconds, UTC
    ends: float
    author: str = ""
    comment: str = ""
    created: float = 0.0
    kind: str = SILENCE  # SILENCE | MUTE
    suppressed: int = field(default=0, compare=False)  # alerts it held back so far

    def active(self, now: float) -> bool:
        return self.starts <= now < self.ends

    def state(self, now: float) -> str:
        return "pending" if now < self.starts else "active" if now < self.ends else "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    @property
    def mute_target(self) -> str | None:
        """The rule (or ``ALL``) of a mute; None for any other silence."""
        if self.kind != MUTE:
            return None
        if not self.matchers:
            return ALL
        m = self.matchers[0]
        return m.value if len(self.matchers) == 1 and m.name == "rule" and m.op == "=" else None

    def describe(self) -> str:
        return " ".join(str(m) for m in self.matchers) or "everything"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.to_json() for m in self.matchers],
            "startsAt": self.starts,
            "endsAt": self.ends,
            "createdBy": self.author,
            "comment": self.comment,
            "created": self.created,
            "kind": self.kind,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Silence:
        return cls(
            id=str(d["id"]),
            matchers=[Matcher.from_json(m) for m in d.get("matchers", [])],
            starts=float(d["startsAt"]),
            ends=float(d["endsAt"]),
            author=str(d.get("createdBy", "")),
            comment=str(d.get("comment", "")),
            created=float(d.get("created", 0.0)),
            kind=str(d.get("kind", SILENCE)),
        )


def silencing(silences: Iterable[Silence], alert: Alert, now: float) -> Silence | None:
    """The active silence that holds `alert` back (the one ending last), or None."""
    labels = labels_of(alert)
    hits = [s for s in silences if s.active(now) and s.matches(labels)]
    return max(hits, key=lambda s: s.ends) if hits else None


@dataclass(slots=True)
class Suppressed:
    dest: str
    alert_id: str
    rule: str
    severity: str
    silence: str
    at: float
    summary: str


def _s(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


class Silences:
    """The silences in Redis, and the record of what they suppressed."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.k_silences = store.key("notify:silences")
        self.k_count = store.key("notify:silenced")
        self.k_suppressed = store.key("notify:suppressed")
        self.k_old_mutes = store.key("notify:mutes")
        self._carried = False

    async def add(
        self,
        matchers: list[Matcher],
        *,
        ends: float,
        starts: float | None = None,
        author: str = "",
        comment: str = "",
        kind: str = SILENCE,
        now: float | None = None,
    ) -> Silence:
        now = time.time() if now is None else now
        starts = now if starts is None else starts
        if ends <= starts:
            raise SilenceError("a silence must end after it starts")
        if ends <= now:
            raise SilenceError("a silence must end in the future")
        s = Silence(
            id=secrets.token_hex(6),
            matchers=list(matchers),
            starts=starts,
            ends=ends,
            author=author[:64],
            comment=comment[:500],
            created=now,
            kind=kind,
        )
        await self.redis.hset(self.k_silences, s.id, orjson.dumps(s.to_json()))
        return s

    async def all(self, now: float | None = None) -> list[Silence]:
        """Every silence not expired for longer than EXPIRED_KEEP (older ones are removed),
        oldest first, with its count of suppressed alerts."""
        now = time.time() if now is None else now
        await self.carry_old_mutes()
        pipe = self.redis.pipeline(transaction=False)
        self.read(pipe)
        pipe.hgetall(self.k_count)
        raw, counts = await pipe.execute()
        return await self.parse(raw, now, counts)

    def read(self, pipe: Any) -> None:
        """Queue the read of every silence on `pipe`; its reply goes to :meth:`parse`. Lets a
        caller read the silences in a round trip it makes anyway (the notifier's per-alert
        ledger lookup)."""
        pipe.hgetall(self.k_silences)

    async def parse(
        self, raw: Mapping[Any, Any], now: float, counts: Mapping[Any, Any] | None = None
    ) -> list[Silence]:
        """The silences of a :meth:`read` reply, as :meth:`all` returns them (with their
        `counts` when given); the unreadable and those expired for longer than EXPIRED_KEEP
        are removed from Redis, which is the only time this makes a round trip."""
        out, gone = [], []
        for k, v in raw.items():
            try:
                s = Silence.from_json(orjson.loads(v))
            except SilenceError as e:  # e.g. a regex of an older version the guard refuses
                log.warning("silence %s cannot be used and is removed: %s", _s(k), e)
                gone.append(k)
                continue
            except (ValueError, KeyError, TypeError):
                gone.append(k)  # unreadable: cannot silence anything
                continue
            if s.ends < now - EXPIRED_KEEP:
                gone.append(k)
                continue
            s.suppressed = int((counts or {}).get(k, 0) or 0)
            out.append(s)
        if gone:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hdel(self.k_silences, *gone)
            pipe.hdel(self.k_count, *gone)
            await pipe.execute()
        return sorted(out, key=lambda s: (s.created, s.id))

    async def active(self, now: float | None = None) -> list[Silence]:
        now = time.time() if now is None else now
        return [s for s in await self.all(now) if s.active(now)]

    async def remove(self, ids: Iterable[str]) -> list[str]:
        """Remove silences by id (or a unique prefix of 4+ characters) with their count of
        suppressed alerts; returns the ids removed. Their entries in the suppressed-alerts
        stream stay: that is the history of what was held back (capped at SUPPRESSED_MAXLEN),
        not state of the silence."""
        every = [s.id for s in await self.all()]
        gone = []
        for want in ids:
            hits = [i for i in every if i == want] or (
                [i for i in every if i.startswith(want)] if len(want) >= 4 else []
            )
            if len(hits) == 1:
                gone.append(hits[0])
        if gone:
            pipe = self.redis.pipeline(transaction=True)
            pipe.hdel(self.k_silences, *gone)
            pipe.hdel(self.k_count, *gone)
            await pipe.execute()
        return gone

    def record(self, pipe: Any, dest: str, alert: Alert, silence: Silence, now: float) -> None:
        """Add the record of a suppressed alert to `pipe` (the transaction of its XACK)."""
        event = {
            "dest": dest,
            "alert_id": alert.id,
            "rule": alert.rule,
            "severity": alert.severity,
            "silence": silence.id,
            "at": repr(now),
            "summary": alert.summary[:300],
        }
        pipe.xadd(self.k_suppressed, event, maxlen=SUPPRESSED_MAXLEN, approximate=True)
        pipe.hincrby(self.k_count, silence.id, 1)

    async def suppressed(self, n: int = 100, silence: str | None = None) -> list[Suppressed]:
        """The most recent suppressed alerts (newest first), of one silence if given."""
        rows: Any = await self.redis.xrevrange(self.k_suppressed, "+", "-", count=max(n, 1) * 4)
        out = []
        for _eid, f in rows:
            d = {_s(k): _s(v) for k, v in f.items()}
            if silence is not None and d.get("silence") != silence:
                continue
            out.append(
                Suppressed(
                    dest=d.get("dest", ""),
                    alert_id=d.get("alert_id", ""),
                    rule=d.get("rule", ""),
                    severity=d.get("severity", ""),
                    silence=d.get("silence", ""),
                    at=float(d.get("at", "0") or 0),
                    summary=d.get("summary", ""),
                )
            )
        return out[:n]

    # ---- mutes: one kind of silence ----------------------------------------------------------

    async def mute(self, target: str, until: float, *, author: str = "") -> Silence | None:
        """Mute a rule (or everything: ``ALL``) until `until`, replacing its earlier mute (a
        mute ending in the past only ends the earlier one)."""
        await self.unmute(target)
        if until <= time.time():
            return None
        matchers = [] if target == ALL else [Matcher("rule", "=", target)]
        what = "all alerts" if target == ALL else f"rule {target}"
        return await self.add(
            matchers, ends=until, author=author, comment=f"/mute {what}", kind=MUTE
        )

    async def unmute(self, target: str | None) -> int:
        """End the mute of one rule (or of ``ALL``), or every mute when `target` is None;
        other silences stay. Returns how many went."""
        ids = [
            s.id
            for s in await self.all()
            if s.mute_target is not None and (target is None or s.mute_target == target)
        ]
        return len(await self.remove(ids)) if ids else 0

    async def mutes(self, now: float | None = None) -> dict[str, float]:
        """Active mutes as rule id (or ``ALL``) -> expiry."""
        now = time.time() if now is None else now
        out: dict[str, float] = {}
        for s in await self.all(now):
            t = s.mute_target
            if t is not None and s.ends > now:  # a mute is in force from when it was set
                out[t] = max(out.get(t, 0.0), s.ends)
        return out

    async def carry_old_mutes(self) -> None:
        """Turn the mutes of older versions into silences: once per instance (a round trip
        the first time only)."""
        if self._carried:
            return
        raw = await self.redis.hgetall(self.k_old_mutes)
        self._carried = True
        if not raw:
            return
        now = time.time()
        for k, v in raw.items():
            until = float(v)
            if until > now:
                await self.mute(_s(k), until)
        await self.redis.delete(self.k_old_mutes)


def muted_until(mutes: Mapping[str, float], rule: str) -> float | None:
    """The expiry of the mute in `mutes` that silences `rule` (its own or ``ALL``), or None."""
    hits = [mutes[t] for t in (rule, ALL) if t in mutes]
    return max(hits) if hits else None
