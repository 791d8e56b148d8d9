"""Committing the engine's checkpoint, as live and replay both do.

The state goes with the series pages changed since the last commit (`bot.engine.pages`). When
the store refuses those pages (its pages are not the revision this engine last wrote: a
failover lost a commit, Redis came back empty) the checkpoint is made again, now with every
page, and committed at once: the alerts are committed with it either way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from bot.core.models import Alert
from bot.engine.engine import Engine
from bot.store.redis_store import Checkpoint, PagesOutOfStep, Store

log = logging.getLogger(__name__)


async def commit_engine(
    store: Store,
    engine: Engine,
    position: str,
    fingerprint: str,
    extra: dict[str, Any],
    alerts: Sequence[Alert],
    **kwargs: Any,
) -> list[str]:
    """`Store.commit` of the engine's checkpoint with `alerts` (and the store's other
    keyword arguments); returns the alerts' outbox ids."""
    for attempt in (1, 2):
        state, pages = engine.checkpoint(extra)
        cp = Checkpoint(position, fingerprint, max(engine.clock, 0.0), state, pages)
        try:
            ids = await store.commit(
                cp, alerts, rule_states=engine.rule_states(), latest=engine.latest(), **kwargs
            )
        except PagesOutOfStep as err:
            if attempt == 2:  # a write of every page names no base: cannot be refused
                raise
            log.warning("engine: %s; writing every page again", err)
            continue
        engine.checkpointed(pages)
        return ids
    raise AssertionError("unreachable")
