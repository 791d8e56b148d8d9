"""The command bot's rate limiter: PTB's ``BaseRateLimiter`` on the alerts' own pacers.

python-telegram-bot passes every Bot API call of an ``ExtBot`` with a ``rate_limiter`` through
``process_request(callback, args, kwargs, endpoint, data, rate_limit_args)`` (``getUpdates``
excepted), where ``data`` holds the call's parameters, ``chat_id`` among them, and the call is
made by awaiting ``callback(*args, **kwargs)`` (read against python-telegram-bot 22.8,
``telegram/ext/_baseratelimiter.py`` and ``ExtBot._do_post``). Here each call waits for the
pacer of its chat from :func:`bot.notify.telegram.shared_pacing`, the same pacers the alert
workers use: one message a second to a chat, twenty a minute to a group, thirty a second in
all, whoever sends. A ``RetryAfter`` pauses that chat's pacer and the call is made again (at
most `max_retries` times, and only for waits up to `max_wait`; a longer one is raised, and
the application's error handler logs it), so a burst of commands gets every reply.
``requests`` and ``rate_limited`` count the calls paced and the 429s answered (``/metrics``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.notify.telegram import TelegramPacing, retry_after_seconds

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]


class PacedRateLimiter(BaseRateLimiter[int]):
    """Paces command replies with the alert pacers; retries after a flood-control 429."""

    def __init__(self, pacing: TelegramPacing, *, max_retries: int = 3, max_wait: float = 60.0):
        self.pacing = pacing
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.requests = 0  # Bot API calls made through the limiter (getUpdates is not)
        self.rate_limited = 0  # of them answered 429 (flood control)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        chat_id = data.get("chat_id")
        pacer = self.pacing.pacer(chat_id) if chat_id is not None else self.pacing.global_
        retries = self.max_retries if rate_limit_args is None else rate_limit_args
        attempt = 0
        while True:
            await pacer.wait()
            self.requests += 1
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as e:
                self.rate_limited += 1
                wait = retry_after_seconds(e)
                if attempt >= retries or wait > self.max_wait:
                    raise
                attempt += 1
                pacer.pause(wait)
                log.info("%s to chat %s: flood control, retrying in %.0fs", endpoint, chat_id, wait)
