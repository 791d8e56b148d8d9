"""What several commands share: the rules a command runs with."""

from __future__ import annotations

from pathlib import Path

from bot.engine.rulefile import RuleSet, default_rules_dir, load_rules
from bot.runtime.config import Config


def rules_for(config: Config, override: Path | None) -> RuleSet:
    """The rules of `override` (``--rules``), else of the config, else the shipped rules."""
    d = override or config.engine.rules_dir or default_rules_dir()
    return load_rules(d, config.sessions)
