"""`stressbot config check`: is this configuration ready to run?

Validates the file (every error names file, key and expectation), compiles the rules it points
at, and checks that every secret a destination or feed needs is present in the environment.
Secrets are never printed: only the names of the variables that should hold them.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bot.cli.common import add_config_option, add_rules_option, rules_for

if TYPE_CHECKING:
    from bot.runtime.config import Config


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="work with the configuration file")
    cs = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    c = cs.add_parser(
        "check",
        help="validate a config file, its rules and the secrets it needs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(c)
    add_rules_option(c)
    c.set_defaults(handler=_check)


def missing_secrets(config: Config) -> list[str]:
    """One line per secret the enabled parts of `config` need but the environment lacks."""
    problems: list[str] = []
    tg = config.notify.telegram
    if (tg.chats or tg.allowed_users) and not os.environ.get(tg.token_env):
        problems.append(f"notify.telegram: the bot token variable {tg.token_env} is not set")
    for hook in config.notify.discord.webhooks:
        if hook.url_env is not None and not os.environ.get(hook.url_env):
            problems.append(
                f"notify.discord.webhooks[{hook.name}]: the webhook URL variable "
                f"{hook.url_env} is not set"
            )
    if config.feeds.enabled:
        for name, feed in config.feeds.sources.items():
            if feed.enabled:
                problems += [
                    f"feeds.sources.{name}: {field} names {var}, which is not set"
                    for field, var in _env_fields(feed)
                    if not os.environ.get(var)
                ]
    return problems


def _env_fields(model: BaseModel) -> list[tuple[str, str]]:
    """(field, variable name) for the `*_env` fields of a feed config that are set."""
    return [
        (field, value)
        for field in type(model).model_fields
        if field.endswith("_env") and isinstance(value := getattr(model, field), str) and value
    ]


async def _check(args: argparse.Namespace) -> int:
    from bot.core.errors import RuleError
    from bot.runtime.config import load_config

    config = load_config(args.config)  # a ConfigError is printed by the CLI's main
    where = args.config or "embedded defaults"
    try:
        rules = rules_for(config, args.rules)
    except RuleError as e:
        for line in e.problems:
            print(line)
        print(f"{where}: {len(e.problems)} rule problem(s)")
        return 1
    secrets = missing_secrets(config)
    for line in secrets:
        print(line)
    feeds = (
        [n for n, f in config.feeds.sources.items() if f.enabled] if config.feeds.enabled else []
    )
    destinations = len(config.notify.telegram.chats) + len(config.notify.discord.webhooks)
    print(
        f"{where}: valid; {len(rules.rules)} rule(s), {len(feeds)} enabled feed(s), "
        f"{destinations} destination(s); "
        + (f"{len(secrets)} missing secret(s)" if secrets else "every secret it needs is set")
    )
    return 1 if secrets else 0
