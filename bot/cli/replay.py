"""`stressbot replay`, `stressbot demo` and `stressbot rules check`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bot.cli import calibrate
from bot.cli.common import add_config_option, add_rules_option, rules_for
from bot.core.errors import RuleError, StressbotError
from bot.core.models import parse_iso_utc
from bot.runtime.config import load_config
from bot.store.connection import open_store

Sub = "argparse._SubParsersAction[argparse.ArgumentParser]"

#: The 312 episode as the demo shows it.
DEMO_FROM = "2020-02-20T00:00:00Z"
DEMO_TO = "2020-04-10T23:59:59Z"


def register_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="replay history files through the engine",
        description="Feed CSV history (ts,symbol,value; .gz accepted) through "
        "the engine, store and rules, on the data's own clock. Several files are merged by "
        "time (rows of one instant in the order the files are given); a file out of time "
        "order is sorted on read and the summary says so. Bad rows, and rows stamped more "
        "than a day after the wall clock, are counted with file:line and skipped.",
    )
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _common(p)
    p.add_argument(
        "--from",
        dest="start",
        metavar="TIME",
        help="start alerting here (earlier rows only warm the windows)",
    )
    p.add_argument("--to", dest="end", metavar="TIME", help="stop after this time")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoint of an interrupted replay of the same input",
    )
    p.add_argument(
        "--deliver",
        action="store_true",
        help="also deliver the alerts to the destinations in the config's [notify] (off by "
        "default: a replay of a live config must not send years of history to its chats)",
    )
    p.set_defaults(handler=_replay)


def register_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="replay the March 2020 dash for cash and show its alerts",
        description="Replays 2020-02-20 to 2020-04-10 (the 312 episode) with "
        "the default rules. No keys needed.",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="FILE",
        help="replay file to use (default: the download cache, fetched if missing)",
    )
    _common(p)
    p.set_defaults(handler=_demo)


def register_rules(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rules", help="work with rule files")
    rs = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    c = rs.add_parser("check", help="validate a rules folder")
    c.add_argument(
        "dir",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="rules folder (default: the configured or shipped rules)",
    )
    add_config_option(c)
    c.set_defaults(handler=_rules_check)
    calibrate.add_to(rs)
    t = rs.add_parser(
        "test",
        help="run rule tests: what must fire on given history, and when",
        description="Replay each test's input through the rules (in memory) and "
        "check its `fires` and `silent` expectations. Exits 1 if any test fails.",
    )
    t.add_argument("files", nargs="+", type=Path, metavar="TESTFILE")
    add_rules_option(t)
    add_config_option(t)
    t.set_defaults(handler=_rules_test)


def _common(p: argparse.ArgumentParser) -> None:
    add_rules_option(p)
    add_config_option(p)
    p.add_argument("--jsonl", type=Path, metavar="OUT", help="write every alert as JSON lines")
    p.add_argument(
        "--rate",
        type=float,
        metavar="N",
        help="replay at most N ticks per second (default: as fast as possible)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def _report_rule_problems(e: RuleError) -> int:
    for line in e.problems:
        print(line, file=sys.stderr)
    print(f"{len(e.problems)} problem(s) found", file=sys.stderr)
    return 1


async def _rules_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    try:
        rs = rules_for(config, args.dir)
    except RuleError as e:
        return _report_rule_problems(e)
    for r in rs.rules:
        print(f"ok  {r.id:<22} {r.pattern:<17} {r.severity:<8} {r.source}")
    print(f"{len(rs.rules)} rule(s) in {len(rs.files)} file(s) are valid")
    return 0


async def _rules_test(args: argparse.Namespace) -> int:
    from bot.runtime.ruletest import load_tests, run_test

    if not args.verbose:  # the report, not the engine's log
        logging.getLogger().setLevel(logging.WARNING)
    config = load_config(args.config)
    try:
        rules = rules_for(config, args.rules)
    except RuleError as e:
        return _report_rule_problems(e)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for path in args.files:
        for spec in load_tests(path):
            r = run_test(spec, path, rules, config)
            if r.skipped:
                counts["skipped"] += 1
                print(f"SKIP  {r.name}  ({path}): {r.skipped}")
            elif r.passed:
                counts["passed"] += 1
                print(f"PASS  {r.name}  ({path}, {r.alerts} alert(s))")
            else:
                counts["failed"] += 1
                print(f"FAIL  {r.name}  ({path})")
                for problem in r.problems:
                    print(f"      - {problem}")
    print(
        f"rule tests: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
    )
    return 1 if counts["failed"] else 0


def _time(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return parse_iso_utc(text if "T" in text else text + "T00:00:00Z")
    except ValueError as e:
        raise StressbotError(
            f"{flag}: expected a time like 2020-03-09 or 2020-03-09T14:00:00Z, got {text!r}"
        ) from e


async def _replay(args: argparse.Namespace) -> int:
    return await run_replay_command(
        args,
        args.files,
        _time(args.start, "--from"),
        _time(args.end, "--to"),
        args.resume,
        namespace="replay",
        deliver=args.deliver,
    )


async def _demo(args: argparse.Namespace) -> int:
    if not args.verbose:  # the demo shows alerts, not the engine's log
        logging.getLogger().setLevel(logging.WARNING)
    if args.data is not None:
        data = args.data
    else:
        from connectors.history.episodes import NoNetwork, ensure_episode

        def say(msg: str) -> None:
            print(f"  {msg}", file=sys.stderr, flush=True)

        print(
            "stressbot demo: looking for the 312 episode in the download cache ...", file=sys.stderr
        )
        hint = "stressbot demo --data ../shared/data/history/episode-312.csv"
        try:
            data = await ensure_episode("312", progress=None if args.quiet else say)
        except NoNetwork as e:
            print(f"stressbot demo: {e}\nReplay a file you already have instead:\n  {hint}")
            return 1
        except StressbotError as e:
            raise StressbotError(
                f"{e}\nReplay a file you already have instead: stressbot demo --data FILE "
                f"(for example: {hint})"
            ) from e
    print(
        "Replaying 2020-02-20 .. 2020-04-10 (the March 2020 dash for cash) with the default "
        "rules.\n"
    )
    return await run_replay_command(
        args,
        [data],
        parse_iso_utc(DEMO_FROM),
        parse_iso_utc(DEMO_TO),
        False,
        namespace="demo",
        show_alerts=True,
    )


async def run_replay_command(
    args: argparse.Namespace,
    files: list[Path],
    start: float | None,
    end: float | None,
    resume: bool,
    namespace: str,
    show_alerts: bool = False,
    deliver: bool = False,
) -> int:
    from bot.runtime.replay import (
        ReplayOptions,
        format_alert_line,
        print_summary,
        run_replay,
        write_jsonl,
    )

    config = load_config(args.config)
    rules = rules_for(config, args.rules)
    missing = [f for f in files if not Path(f).is_file()]  # noqa: ASYNC240 - a few stat calls
    if missing:
        raise StressbotError(f"{missing[0]}: no such replay file")
    async with open_store(config.redis, namespace=namespace, allow_embedded=True) as (
        store,
        embedded,
    ):
        if embedded:
            print(
                "stressbot: no Redis server reachable: using the embedded in-process store "
                "(nothing is kept after exit; --resume needs a Redis server)",
                file=sys.stderr,
            )
        zone = config.display.timezone
        opts = ReplayOptions(
            files=files,
            start=start,
            end=end,
            resume=resume,
            rate=args.rate,
            checkpoint_every=config.engine.checkpoint_every,
            progress=None if args.quiet else sys.stderr,
            on_alert=(lambda a: print(format_alert_line(a, zone), flush=True))
            if show_alerts
            else None,
        )
        result = await run_replay(opts, config, store, rules)
        if args.jsonl:
            write_jsonl(result.alerts, args.jsonl)
        print_summary(result)
        if args.jsonl:
            print(f"  alerts written to {args.jsonl}")
        dests = [c.name for c in config.notify.telegram.chats]
        dests += [w.name for w in config.notify.discord.webhooks]
        if dests and not deliver:
            how = "add --deliver" if namespace == "replay" else "use stressbot replay --deliver"
            print(
                f"  delivery          none: the config has {len(dests)} destination(s) "
                f"({', '.join(dests)}); {how} to send these alerts to them"
            )
        elif dests:
            from bot.notify import deliver_pending
            from bot.telegram.session_chart import alert_renderer

            report = await deliver_pending(config, store, renderer=alert_renderer(config.sessions))
            print(f"  delivery          {report.summary()}")
            if not report.complete:
                print(
                    "  (undelivered alerts stay in the outbox; run the replay again with "
                    "--resume to retry them)"
                )
    return 0
