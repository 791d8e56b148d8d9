"""Every subcommand. Each `register` adds one subparser (in the module that owns the work) and
sets `handler` on it; heavy imports wait inside the handlers, so start-up stays quick."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from bot.cli.config import register as register_config
from bot.cli.deadletters import register as register_deadletters
from bot.cli.feeds import register as register_feeds
from bot.cli.history import register as register_history
from bot.cli.like import register as register_like
from bot.cli.notify import register as register_notify
from bot.cli.replay import register_demo, register_replay, register_rules
from bot.cli.report import register as register_report
from bot.cli.run import register as register_run
from bot.cli.sessions import register as register_sessions
from bot.cli.silence import register as register_silence
from bot.cli.status import register as register_status

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRY: list[Register] = [
    register_run,
    register_replay,
    register_report,
    register_sessions,
    register_demo,
    register_rules,
    register_history,
    register_feeds,
    register_status,
    register_notify,
    register_deadletters,
    register_silence,
    register_config,
    register_like,
]
