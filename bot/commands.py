"""The list of subcommands. Each entry adds one subparser and sets `handler` on it."""

from __future__ import annotations

import argparse
from collections.abc import Callable

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

REGISTRY: list[Register] = []


def _core() -> None:
    from bot.live import register_run
    from bot.replay_commands import register_demo, register_replay, register_rules

    REGISTRY.extend([register_run, register_replay, register_demo, register_rules])


_core()


def _history_download(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from connectors.history_download import register  # argparse only; sources load on run

    register(sub)


REGISTRY.append(_history_download)


def _feeds(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from connectors.cli_feeds import register  # argparse only; Redis and config load on run

    register(sub)


REGISTRY.append(_feeds)
