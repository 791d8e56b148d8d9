"""The condition language of rule files: small, typed, and safe.

An expression is parsed with Python's `ast` module and only a whitelist of node types is
accepted; it is then translated into the source of one Python function, built by the
compiler from the checked tree alone (numbers as `repr`, the window functions as bound
names, no builtins), so an evaluation is one call with no interpretation overhead. No text
of the rule reaches that source, no attribute or subscript access exists, and every function
is one of the window functions below.

Types are checked when the file is loaded: unknown symbols or functions, wrong arguments and
mixing numbers with truth values are reported with the offending text.

Missing data makes a value unknown (None). Comparisons with an unknown value are unknown, and
`and`, `or`, `not` follow three-valued (Kleene) logic, so a rule neither fires nor resolves
because a feed has not delivered yet.

Functions (windows are duration strings such as "24h", "5d"):

=====================================  ==================================================
``last(SYM)``                          latest value
``ret(SYM, W)``                        percent return over W
``change(SYM, W)``                     change over W in the series' own units
``bp(SYM, W)``                         change over W in basis points (yields, rates, spreads)
``drawdown(SYM, W)``                   percent below the highest value in W
``rally(SYM, W)``                      percent above the lowest value in W
``high(SYM, W)`` ``low(SYM, W)``       highest / lowest value in W (older history is kept as
                                       5-minute bars that keep their highs and lows)
``mean(SYM, W)``                       time-weighted mean of the values in W
``session_ret(SYM, SESSION, W)``       sum of the symbol's percent returns within the named
                                       trading session, over the sessions begun in W
``count_falling([SYM, ...], W, PCT)``  how many of the symbols fell by more than PCT % in W
``count_rising([SYM, ...], W, PCT)``   how many rose by more than PCT % in W
``low_last(SYM, N)``                   lowest of the last N observations (persistence in
``high_last(SYM, N)``                  publications, e.g. daily rates over weekends)
``prev(SYM)``                          the observation before the latest (the previous
                                       fixing of a daily rate)
``zscore(SYM, W, LOOKBACK)``           the latest change over W in standard deviations of
                                       the W-changes before it across LOOKBACK (how
                                       unusual a move is for the regime it broke from)
``stale(SYM, W)``                      true when the symbol has no value newer than W
``abs(X)``                             absolute value
``min(X, ...)`` ``max(X, ...)``        smallest / largest of the known values
``coalesce(X, Y, ...)``                the first known value (a default for missing data)
``sigma(SYM, W, LOOKBACK[, TYPICAL])`` the change over W in units of the regime's typical
                                       W-move: ``vol`` over LOOKBACK, ending one W before;
                                       TYPICAL (% or bp) stands in while history is short
``vol(SYM, W, LOOKBACK)``              RMS of the back-to-back W-changes across LOOKBACK
                                       (percent for prices, bp for yields), sampled daily
``max_drop(SYM, W)``                   deepest fall from a high to a later low in W, percent
                                       (an intraday wick that already recovered counts)
``age_h(SYM)``                         hours since the symbol's latest observation
``count(COND, ...)``                   how many of the conditions are true
``known(X)``                           true when X is known, false when unknown
=====================================  ==================================================

``sigma``/``vol`` are computed in `bot.engine.functions` (see there: the regime is sampled
once a day and cached, so they are cheap at any evaluation rate). ``count`` ignores unknown
conditions and is unknown only when all are; ``known`` lets a rule say what to do without an
input, e.g. ``not known(ret("SPX", "5d")) or ret("SPX", "5d") > -5``.

``count_falling`` and ``count_rising`` count among the symbols that have data; ``min`` and
``max`` ignore unknown values. Each is unknown only when none of its inputs is known.

Missing input (a span with no tick at all, or ticks lost) is never read as a move: a value
is not "known at t" when missing input lies between its observation and t, so a return or
change whose window starts across a gap is unknown; ``high``, ``low`` and ``mean`` use the
observations inside the window; ``low_last``, ``high_last`` and ``prev`` are unknown when a
gap lies among the observations they would use.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from bot.core.durations import parse_duration
from bot.core.errors import DurationError
from bot.core.models import SYMBOLS, Kind
from bot.engine.functions import regime_fn, window_fn, zscore_fn
from bot.engine.series import Series
from bot.engine.sessions import SessionReturns
from bot.engine.stress import STRESS_FUNCTIONS, stress_call


class EvalContext:
    """What an expression can see: the series, the event clock, the session calculator."""

    __slots__ = ("now", "series", "sessions")

    def __init__(self, series: dict[str, Series], sessions: SessionReturns) -> None:
        self.series = series
        self.sessions = sessions
        self.now = 0.0


Value = float | bool | None
Fn = Callable[[EvalContext], Any]


class T(Enum):
    NUM = "number"
    BOOL = "true/false"
    STR = "text"
    LIST = "list"


class ExprError(Exception):
    """A problem in an expression. `line` (1-based, within the expression) and `segment` (the
    offending text) are filled in by `compile_expr`."""

    def __init__(self, message: str, node: ast.AST | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.line = 1
        self.segment = ""


@dataclass
class Compiled:
    code: str  # a Python expression of `c` (the EvalContext) and the compiler's names
    type: T
    symbols: list[str] = field(default_factory=list)  # in order of first appearance
    lookback: dict[str, float] = field(default_factory=dict)  # symbol -> longest window
    uses_clock: bool = False  # its value can change with time alone (stale())
    const: Any = None  # for literal strings and lists
    fn: Fn = field(default=lambda c: None, repr=False)  # set for a whole expression

    def build(self, env: dict[str, Any]) -> None:
        """Compile `code` into `fn` (one function per expression)."""
        # Safe: `code` is made by `_Compiler` from a whitelisted tree; no rule text is in it.
        src = f"def _expr(c):\n    return {self.code}\n"
        scope: dict[str, Any] = {"__builtins__": {}, **_HELPERS, **env}
        exec(compile(src, "<rule expression>", "exec"), scope)
        self.fn = scope["_expr"]


# ---- argument kinds for the function table ------------------------------------------------

SYM, DUR, SESSION, PCT, NUMS, SYMLIST, NUM, COUNT = (
    "SYM",
    "DUR",
    "SESSION",
    "PCT",
    "NUMS",
    "SYMLIST",
    "NUM",
    "COUNT",
)
BOOLS, ANY = "BOOLS", "ANY"

#: name -> (argument kinds, result type, kinds of symbol it accepts or None for any)
SIGNATURES: dict[str, tuple[tuple[str, ...], T, frozenset[Kind] | None]] = {
    "last": ((SYM,), T.NUM, None),
    "ret": ((SYM, DUR), T.NUM, frozenset({Kind.PRICE})),
    "change": ((SYM, DUR), T.NUM, None),
    "bp": ((SYM, DUR), T.NUM, frozenset({Kind.RATE, Kind.SPREAD_BP})),
    "drawdown": ((SYM, DUR), T.NUM, frozenset({Kind.PRICE})),
    "rally": ((SYM, DUR), T.NUM, frozenset({Kind.PRICE})),
    "high": ((SYM, DUR), T.NUM, None),
    "low": ((SYM, DUR), T.NUM, None),
    "mean": ((SYM, DUR), T.NUM, None),
    "session_ret": ((SYM, SESSION, DUR), T.NUM, frozenset({Kind.PRICE})),
    "count_falling": ((SYMLIST, DUR, PCT), T.NUM, frozenset({Kind.PRICE})),
    "count_rising": ((SYMLIST, DUR, PCT), T.NUM, frozenset({Kind.PRICE})),
    "low_last": ((SYM, COUNT), T.NUM, None),
    "high_last": ((SYM, COUNT), T.NUM, None),
    "prev": ((SYM,), T.NUM, None),
    "stale": ((SYM, DUR), T.BOOL, None),
    "zscore": ((SYM, DUR, DUR), T.NUM, None),
    "abs": ((NUM,), T.NUM, None),
    "min": ((NUMS,), T.NUM, None),
    "max": ((NUMS,), T.NUM, None),
    "coalesce": ((NUMS,), T.NUM, None),
    "sigma": ((SYM, DUR, DUR), T.NUM, None),
    "vol": ((SYM, DUR, DUR), T.NUM, None),
    "max_drop": ((SYM, DUR), T.NUM, frozenset({Kind.PRICE})),
    "age_h": ((SYM,), T.NUM, None),
    "count": ((BOOLS,), T.NUM, None),
    "known": ((ANY,), T.BOOL, None),
    "stress": ((), T.NUM, None),  # the stress gauge, 0-100 (bot.engine.stress)
    "stress_component": ((ANY,), T.NUM, None),  # one component by name, in sigmas
}

_KIND_HINT = {
    Kind.PRICE: "a price (use ret(), drawdown() or rally() for it)",
    Kind.RATE: "a yield or rate in percent (use bp() or change() for it)",
    Kind.SPREAD_BP: "a spread in basis points (use bp(), change() or last() for it)",
}


def compile_expr(text: str, sessions: Iterable[str], expect: T = T.BOOL) -> Compiled:
    """Parse, type-check and compile `text`. Raises ExprError."""
    # Parenthesised on lines of their own, so a condition may span lines without backslashes.
    source = "(\n" + text.strip() + "\n)"
    try:
        tree = ast.parse(source, mode="eval")
        comp = _Compiler(set(sessions))
        out = comp.visit(tree.body)
        if out.type is not expect:
            raise ExprError(
                f"the expression must give {expect.value}, it gives {out.type.value}", tree.body
            )
        try:
            out.build(comp.env)
        except (SyntaxError, RecursionError, MemoryError):
            raise ExprError("the expression is nested too deeply", tree.body) from None
        return out
    except SyntaxError as e:
        err = ExprError(f"syntax error: {e.msg}")
        err.line = max((e.lineno or 2) - 1, 1)
        lines = source.splitlines()
        if e.lineno and 0 < e.lineno <= len(lines):
            err.segment = lines[e.lineno - 1].strip()
        raise err from None
    except ExprError as err:
        if err.node is not None and hasattr(err.node, "lineno"):
            err.line = max(err.node.lineno - 1, 1)
            err.segment = ast.get_source_segment(source, err.node) or ""
        raise


class _Compiler:
    def __init__(self, sessions: set[str]) -> None:
        self.sessions = sessions
        self.env: dict[str, Any] = {}  # name in the code -> window function
        self._n = 0

    def _tmp(self) -> str:
        """A fresh local name for the generated code."""
        self._n += 1
        return f"_t{self._n}"

    def _leaf(self, fn: Fn) -> str:
        name = f"_f{len(self.env)}"
        self.env[name] = fn
        return f"{name}(c)"

    def visit(self, node: ast.AST) -> Compiled:
        method = getattr(self, "v_" + type(node).__name__, None)
        if method is None:
            raise ExprError(f"{_describe(node)} is not allowed in a rule expression", node)
        out: Compiled = method(node)
        return out

    # literals ---------------------------------------------------------------------------

    def v_Constant(self, node: ast.Constant) -> Compiled:
        v = node.value
        if isinstance(v, bool):
            return Compiled(repr(v), T.BOOL, const=v)
        if isinstance(v, int | float):
            return Compiled(f"({float(v)!r})", T.NUM, const=float(v))
        if isinstance(v, str):
            return Compiled("None", T.STR, const=v)  # only ever an argument
        raise ExprError(f"the literal {v!r} is not allowed", node)

    def v_Name(self, node: ast.Name) -> Compiled:
        if node.id in ("true", "false"):
            b = node.id == "true"
            return Compiled(repr(b), T.BOOL, const=b)
        hint = ""
        if node.id in SYMBOLS or node.id.upper() in SYMBOLS:
            hint = f' (write symbols in quotes: "{node.id}")'
        raise ExprError(f"unknown name '{node.id}'{hint}", node)

    def v_List(self, node: ast.List) -> Compiled:
        items = []
        for el in node.elts:
            if not (isinstance(el, ast.Constant) and isinstance(el.value, str)):
                raise ExprError("a list may only hold quoted symbols", el)
            items.append(el)
        return Compiled("None", T.LIST, const=items)

    # operators --------------------------------------------------------------------------

    def v_UnaryOp(self, node: ast.UnaryOp) -> Compiled:
        x = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            self._want(x, T.BOOL, node.operand, "'not'")
            return self._derive(self._unary(x, "not {}"), T.BOOL, x)
        if isinstance(node.op, ast.USub | ast.UAdd):
            self._want(x, T.NUM, node.operand, "a sign")
            if isinstance(node.op, ast.UAdd):
                return x
            if x.const is not None:
                return Compiled(f"({-x.const!r})", T.NUM, const=-x.const)
            return self._derive(self._unary(x, "-{}"), T.NUM, x)
        raise ExprError(f"the operator {type(node.op).__name__} is not allowed", node)

    def v_BinOp(self, node: ast.BinOp) -> Compiled:
        a, b = self.visit(node.left), self.visit(node.right)
        self._want(a, T.NUM, node.left, "arithmetic")
        self._want(b, T.NUM, node.right, "arithmetic")
        op = _ARITH.get(type(node.op))
        if op is None:
            name = type(node.op).__name__
            raise ExprError(f"the operator {name} is not allowed (use + - * /)", node)
        x, y = self._tmp(), self._tmp()
        zero = f" or {y} == 0" if op == "/" else ""  # x / 0 is unknown
        code = (
            f"(None if ({x} := {a.code}) is None or ({y} := {b.code}) is None{zero} "
            f"else {x} {op} {y})"
        )
        return self._derive(code, T.NUM, a, b)

    def v_BoolOp(self, node: ast.BoolOp) -> Compiled:
        parts = [self.visit(v) for v in node.values]
        for p, v in zip(parts, node.values, strict=True):
            self._want(p, T.BOOL, v, "'and'/'or'")
        # Kleene logic: `and` stops at the first False, `or` at the first True; otherwise the
        # result is unknown if any part was, else the opposite of the stopping value.
        stop = not isinstance(node.op, ast.And)
        names = [self._tmp() for _ in parts]
        stops = " or ".join(
            f"({t} := {p.code}) is {stop}" for t, p in zip(names, parts, strict=True)
        )
        unknown = " or ".join(f"{t} is None" for t in names)
        code = f"({stop} if {stops} else (None if {unknown} else {not stop}))"
        return self._derive(code, T.BOOL, *parts)

    def v_Compare(self, node: ast.Compare) -> Compiled:
        operands = [self.visit(node.left)] + [self.visit(x) for x in node.comparators]
        for o, n in zip(operands, [node.left, *node.comparators], strict=True):
            self._want(o, T.NUM, n, "a comparison")
        ops = []
        for op in node.ops:
            f = _CMP.get(type(op))
            if f is None:
                raise ExprError(f"the comparison {type(op).__name__} is not allowed", node)
            ops.append(f)
        names = [self._tmp() for _ in operands]
        known = " or ".join(
            f"({t} := {o.code}) is None" for t, o in zip(names, operands, strict=True)
        )
        tests = " and ".join(f"{names[i]} {op} {names[i + 1]}" for i, op in enumerate(ops))
        code = f"(None if {known} else ({tests}))"
        return self._derive(code, T.BOOL, *operands)

    # function calls ---------------------------------------------------------------------

    def v_Call(self, node: ast.Call) -> Compiled:
        if not isinstance(node.func, ast.Name):
            raise ExprError("only the listed window functions can be called", node)
        name = node.func.id
        sig = SIGNATURES.get(name)
        if sig is None:
            close = difflib.get_close_matches(name, SIGNATURES, n=1)
            hint = f" (did you mean {close[0]}()?)" if close else ""
            raise ExprError(f"unknown function '{name}'{hint}", node)
        if node.keywords:
            raise ExprError(f"{name}() takes its arguments by position only", node)
        kinds, result, accepts = sig
        args = node.args
        if name in STRESS_FUNCTIONS:
            try:
                fn, syms, back = stress_call(name, [self._string(a, name, "a name") for a in args])
            except ValueError as e:
                raise ExprError(str(e), node) from None
            return Compiled(self._leaf(fn), T.NUM, symbols=syms, lookback=back)
        if kinds == (BOOLS,) or kinds == (ANY,):
            return self._logic_call(node, name)
        if kinds == (NUMS,):
            if not args:
                raise ExprError(f"{name}() needs at least one number", node)
            parts = [self.visit(a) for a in args]
            for p, a in zip(parts, args, strict=True):
                self._want(p, T.NUM, a, f"{name}()")
            if name == "coalesce":  # the first known value
                code = ""
                for p in parts:
                    tmp = self._tmp()
                    code += f"{tmp} if ({tmp} := {p.code}) is not None else "
                return self._derive(f"({code}None)", T.NUM, *parts)
            # min/max of the known values: a fold, comparing as the builtins do (the first
            # operand is evaluated in the condition, which runs before either branch)
            better = "<" if name == "min" else ">"
            code = parts[0].code
            for p in parts[1:]:
                tx, ty = self._tmp(), self._tmp()
                pick = f"{ty} if {tx} is None or {ty} {better} {tx} else {tx}"
                code = (
                    f"(({tx} if ({ty} := {p.code}) is None else {pick}) "
                    f"if (({tx} := {code}) is None or True) else None)"
                )
            return self._derive(code, T.NUM, *parts)
        typical = None
        if name == "sigma" and len(args) == 4:
            t = self.visit(args[3])
            if t.type is not T.NUM or t.const is None or t.const <= 0:
                raise ExprError("sigma()'s typical move must be a plain positive number", args[3])
            typical, args = float(t.const), args[:3]
        if len(args) != len(kinds):
            raise ExprError(
                f"{name}() takes {len(kinds)} argument{'s' if len(kinds) != 1 else ''} "
                f"({', '.join(_ARG_NAMES[k] for k in kinds)}), got {len(args)}",
                node,
            )
        if name == "abs":
            x = self.visit(args[0])
            self._want(x, T.NUM, args[0], "abs()")
            return self._derive(self._unary(x, "abs({})"), T.NUM, x)
        return self._window_call(node, name, kinds, result, accepts, typical)

    def _logic_call(self, node: ast.Call, name: str) -> Compiled:
        """count(B, ...): how many conditions are true (unknown when none is known);
        known(X): whether X is known (never unknown itself)."""
        if not node.args or (name == "known" and len(node.args) != 1):
            raise ExprError(
                f"{name}() needs {'one value' if name == 'known' else 'conditions'}", node
            )
        parts = [self.visit(a) for a in node.args]
        if name == "known":
            if parts[0].type not in (T.NUM, T.BOOL):
                raise ExprError("known() needs a number or a condition", node.args[0])
            return self._derive(f"(({parts[0].code}) is not None)", T.BOOL, parts[0])
        for p, a in zip(parts, node.args, strict=True):
            self._want(p, T.BOOL, a, "count()")
        code = f"_count({', '.join(p.code for p in parts)})"
        return self._derive(code, T.NUM, *parts)

    def _window_call(
        self,
        node: ast.Call,
        name: str,
        kinds: tuple[str, ...],
        result: T,
        accepts: frozenset[Kind] | None,
        typical: float | None = None,
    ) -> Compiled:
        syms: list[str] = []
        window = 0.0
        windows: list[float] = []
        session = ""
        pct = 0.0
        count = 0
        for kind, arg in zip(kinds, node.args[: len(kinds)], strict=True):
            if kind == SYM:
                syms.append(self._symbol(arg, name, accepts))
            elif kind == SYMLIST:
                if not isinstance(arg, ast.List) or not arg.elts:
                    raise ExprError(
                        f'{name}() needs a list of symbols such as ["BTC/USD", "SPX"]', arg
                    )
                syms.extend(self._symbol(el, name, accepts) for el in arg.elts)
            elif kind == DUR:
                window = self._duration(arg, name)
                windows.append(window)
            elif kind == SESSION:
                session = self._string(arg, name, "a session name")
                if session not in self.sessions:
                    known = ", ".join(sorted(self.sessions)) or "none configured"
                    raise ExprError(f"unknown session '{session}' (known: {known})", arg)
            elif kind == PCT:
                v = self.visit(arg)
                if v.type is not T.NUM or v.const is None:
                    raise ExprError(f"{name}() needs a plain number of percent here", arg)
                pct = float(v.const)
            elif kind == COUNT:
                v = self.visit(arg)
                if (
                    v.type is not T.NUM
                    or v.const is None
                    or v.const != int(v.const)
                    or not (1 <= v.const <= 1000)
                ):
                    raise ExprError(
                        f"{name}() needs a whole number of observations from 1 to 1000 here", arg
                    )
                count = int(v.const)
        lookback = {s: window for s in syms}
        if name == "session_ret":
            lookback = {s: window + 86400.0 for s in syms}  # the oldest session may start earlier
        elif count:
            lookback = {s: count * 4 * 86400.0 for s in syms}  # N daily prints, with holidays
        elif name == "prev":
            lookback = {s: 2 * 4 * 86400.0 for s in syms}
        elif name in ("zscore", "sigma", "vol"):
            window, span = windows
            if span < 11 * window:
                raise ExprError(
                    f"{name}() needs a lookback of at least 11 windows "
                    f"(here {int(span // window)})",
                    node.args[2],
                )
            lookback = {s: span + 2 * window + 86400.0 for s in syms}
            if name == "zscore":
                fn = zscore_fn(syms[0], window, span)
            else:
                fn = regime_fn(syms[0], window, span, name == "sigma", typical)
            return Compiled(self._leaf(fn), result, symbols=syms, lookback=lookback)
        fn = window_fn(name, syms, window, session, pct, count)
        clock = name in ("stale", "age_h")
        code = self._leaf(fn)
        return Compiled(code, result, symbols=syms, lookback=lookback, uses_clock=clock)

    # helpers ----------------------------------------------------------------------------

    def _string(self, node: ast.AST, fname: str, what: str) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        raise ExprError(f"{fname}() needs {what} in quotes here", node)

    def _symbol(self, node: ast.AST, fname: str, accepts: frozenset[Kind] | None) -> str:
        if isinstance(node, ast.Name):
            raise ExprError(f'write the symbol in quotes: "{node.id}"', node)
        sym = self._string(node, fname, 'a symbol such as "BTC/USD"')
        kind = SYMBOLS.get(sym)
        if kind is None:
            close = difflib.get_close_matches(sym, SYMBOLS, n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ExprError(f"unknown symbol '{sym}'{hint}", node)
        if accepts is not None and kind not in accepts:
            raise ExprError(
                f"{fname}() does not apply to '{sym}', which is {_KIND_HINT[kind]}", node
            )
        return sym

    def _duration(self, node: ast.AST, fname: str) -> float:
        text = self._string(node, fname, 'a window such as "24h" or "5d"')
        try:
            w = parse_duration(text)
        except DurationError as e:
            raise ExprError(f"{fname}(): {e}", node) from None
        if w <= 0:
            raise ExprError(f"{fname}(): the window must be longer than zero", node)
        return w

    def _want(self, x: Compiled, t: T, node: ast.AST, where: str) -> None:
        if x.type is not t:
            raise ExprError(f"{where} needs {t.value}, but this is {x.type.value}", node)

    def _unary(self, x: Compiled, op: str) -> str:
        """`op` applied to x's value, unknown when it is."""
        t = self._tmp()
        return f"(None if ({t} := {x.code}) is None else {op.format(t)})"

    @staticmethod
    def _derive(code: str, t: T, *parts: Compiled) -> Compiled:
        syms: list[str] = []
        lookback: dict[str, float] = {}
        for p in parts:
            for s in p.symbols:
                if s not in syms:
                    syms.append(s)
            for s, w in p.lookback.items():
                lookback[s] = max(lookback.get(s, 0.0), w)
        return Compiled(code, t, syms, lookback, any(p.uses_clock for p in parts))


_ARG_NAMES = {
    SYM: "symbol",
    DUR: "window",
    SESSION: "session",
    PCT: "percent",
    SYMLIST: "list of symbols",
    NUM: "number",
    NUMS: "numbers",
    COUNT: "count",
    BOOLS: "conditions",
    ANY: "value",
}

_CMP: dict[type, str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
_ARITH: dict[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _count(*vals: Value) -> Value:
    """count(): how many are true among the known; unknown when none is known."""
    known = [v for v in vals if v is not None]
    return float(sum(1 for v in known if v)) if known else None


_HELPERS: dict[str, Any] = {"abs": abs, "_count": _count}


def _describe(node: ast.AST) -> str:
    return {
        "Attribute": "attribute access (a.b)",
        "Subscript": "indexing (a[b])",
        "Lambda": "lambda",
        "Dict": "a table literal",
        "IfExp": "'x if y else z'",
        "JoinedStr": "an f-string",
        "Tuple": "a tuple",
        "NamedExpr": "':='",
    }.get(type(node).__name__, f"'{type(node).__name__}'")
