"""Exceptions a user can act on. Every message names where the problem is and why."""

from __future__ import annotations


class StressbotError(Exception):
    """Base class for errors that are reported to the user without a traceback."""


class ConfigError(StressbotError):
    """The configuration file or an environment variable is invalid."""


class RuleError(StressbotError):
    """A rule file is invalid. Carries every problem found, each with file and line."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class DurationError(ValueError):
    """A duration string such as '24h' could not be parsed."""


class ResumeError(StressbotError):
    """A replay cannot be resumed from the checkpoint found in the store."""


class StoreUnavailable(StressbotError):
    """The Redis server could not be reached."""
