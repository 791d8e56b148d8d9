"""What several commands share: the --config and --rules options, and the rules to run."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.runtime.config import Config


def rules_for(config: Config, override: Path | None) -> RuleSet:
    """The rules of `override` (``--rules``), else of the config, else the shipped rules."""
    d = override or config.engine.rules_dir or default_rules_dir()
    return load_rules(d, config.sessions)


def add_config_option(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument(
        "--config", type=Path, metavar="FILE", required=required, help="config file (TOML)"
    )


def add_rules_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rules", type=Path, metavar="DIR", help="rules folder (default: rules/)")
