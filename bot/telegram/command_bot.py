"""The Telegram command bot: ask "how bad is it right now?".

Commands: /status, /rules, /mute RULE|all DURATION, /unmute [RULE|all], /silence MATCHER...
DURATION [COMMENT], /silences, /unsilence ID, /history [N], /chart [SYMBOLS] [WINDOW],
/sessions [DAYS], /like, /test [SEVERITY], /help.

Commands run only for the Telegram user ids in ``notify.telegram.allowed_users`` (kept apart
from the chats that receive alerts); anyone else gets a short refusal and is logged. Every
reply is Telegram HTML built from escaped values, so hostile arguments come back verbatim.
The command logic (:class:`Commands`) is independent of python-telegram-bot; the
:class:`TelegramCommandBot` glue runs it on PTB's Application with long polling.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from bot.core.errors import ConfigError
from bot.notify.base import install_redaction
from bot.notify.chart import ChartRenderer
from bot.notify.format import TG_CAPTION_LIMIT, TG_TEXT_LIMIT, Line, split_lines, tg_len, trim
from bot.notify.telegram import shared_pacing
from bot.telegram.commands import (
    HELP,
    CommandBotSettings,
    CommandError,
    Commands,
    Reply,
    shown,
)
from bot.telegram.limiter import PacedRateLimiter

if TYPE_CHECKING:
    from telegram import Message, Update
    from telegram.ext import Application

    from bot.store.redis_store import Store

log = logging.getLogger(__name__)

__all__ = ["CommandBotSettings", "CommandError", "Commands", "Reply", "TelegramCommandBot"]


def reply_chunks(text: str, limit: int = TG_TEXT_LIMIT) -> list[str]:
    """Split an HTML reply into messages within `limit` (UTF-16 units, as Telegram counts,
    both as sent and as shown). Our replies keep tags within a line or a <pre> block, so lines
    are whole units; a reply with a <pre> block, or a line too long for one message, is split
    as plain text instead (escaped again), so no tag is ever cut."""
    if tg_len(text) <= limit:
        return [text]
    lines = text.splitlines()
    if "<pre>" in text or any(tg_len(x) > limit for x in lines):
        plain = html.unescape(_strip_tags(text))
        return split_lines([Line(html.escape(x), x) for x in plain.splitlines()], limit)
    return split_lines([Line(x, x) for x in lines], limit)


def _strip_tags(text: str) -> str:
    return re.sub(r"</?[a-z-]+[^>]*>", "", text)


class TelegramCommandBot:
    """Runs :class:`Commands` on python-telegram-bot's Application with long polling.

    One ``CommandHandler`` per command, each with ``filters.User(allowed_users)``; a command
    from anyone else falls through to the refusal (an empty allow-list refuses everyone:
    ``filters.User`` with no ids and ``allow_empty=False`` lets nobody through). Replies go
    through :class:`~bot.telegram.limiter.PacedRateLimiter`, on the pacers the alerts use, and
    anything a handler raises reaches :meth:`_on_error` (without one PTB logs "No error
    handlers are registered" and the reply is lost unnoticed). Service messages announcing
    that a group became a supergroup (``migrate_to_chat_id`` / ``migrate_from_chat_id``) are
    recorded, so alerts follow the group.
    """

    COMMANDS = (
        *("status", "rules", "mute", "unmute", "silence", "silences", "unsilence"),
        *("history", "chart", "sessions", "like", "test", "help", "start"),
    )

    def __init__(
        self, config: CommandBotSettings, store: Store, *, renderer: ChartRenderer | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.commands = Commands(config, store, renderer=renderer)
        self.allowed = set(config.notify.telegram.allowed_users)
        self.refused = 0
        self.limiter: PacedRateLimiter | None = None  # set when the application is built

    @classmethod
    def from_config(cls, config: CommandBotSettings, store: Store) -> TelegramCommandBot | None:
        """The command bot, or None when commands are off or no bot token is set (logged)."""
        tg = config.notify.telegram
        if not tg.commands:
            return None
        if tg.token() is None:
            if tg.chats or tg.allowed_users:
                log.warning("Telegram commands need the bot token: export %s", tg.token_env)
            return None
        return cls(config, store)

    @staticmethod
    def enabled(config: CommandBotSettings) -> bool:
        """Whether the live service should run the command bot (commands on, token set)."""
        tg = config.notify.telegram
        return tg.commands and tg.token() is not None

    def build_application(self, token: str) -> Application[Any, Any, Any, Any, Any, Any]:
        """The PTB application with its handlers, rate limiter and error handler (not started;
        it must be built inside the running event loop, whose pacers it shares)."""
        from telegram.ext import ApplicationBuilder, CommandHandler, MessageHandler, filters

        tg = self.config.notify.telegram
        base = tg.api_base.rstrip("/")
        self.limiter = PacedRateLimiter(shared_pacing(token, tg))
        app = (
            ApplicationBuilder()
            .token(token)
            .base_url(f"{base}/bot")
            .base_file_url(f"{base}/file/bot")
            .connect_timeout(10)
            .read_timeout(15)
            .write_timeout(15)
            .get_updates_read_timeout(tg.poll_timeout + 10)
            .rate_limiter(self.limiter)
            .build()
        )
        allowed = filters.User(user_id=sorted(self.allowed))
        for name in self.COMMANDS:
            app.add_handler(CommandHandler(name, self._command(name), filters=allowed))
        app.add_handler(MessageHandler(filters.COMMAND & allowed, self._unknown))
        app.add_handler(MessageHandler(filters.COMMAND, self._refuse))
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._migrated), group=1)
        app.add_error_handler(self._on_error)
        return app

    async def run(self, stop: asyncio.Event) -> None:
        """Answer commands until `stop` is set. Raises ConfigError without a bot token."""
        tg = self.config.notify.telegram
        if not tg.commands:
            log.info("Telegram commands are off (notify.telegram.commands = false)")
            return
        token = tg.token()
        if token is None:
            raise ConfigError(f"the command bot needs the bot token: export {tg.token_env}")
        install_redaction([token])
        app = self.build_application(token)
        if not self.allowed:
            log.warning("notify.telegram.allowed_users is empty: every command will be refused")
        async with app:
            await app.start()
            assert app.updater is not None
            await app.updater.start_polling(
                timeout=int(tg.poll_timeout),
                allowed_updates=["message"],
                drop_pending_updates=False,
            )
            try:
                await stop.wait()
            finally:
                await app.updater.stop()
                await app.stop()

    def _command(self, name: str) -> Callable[[Update, Any], Coroutine[Any, Any, None]]:
        async def handle(update: Update, context: Any) -> None:
            await self._answer(name, update)

        return handle

    async def _answer(self, cmd: str, update: Update) -> None:
        msg, user = update.effective_message, update.effective_user
        if msg is None or msg.text is None or user is None:
            return
        args = msg.text.split()[1:]
        try:
            reply = await self.dispatch(cmd, args, requested_by=f"@{user.username or user.id}")
        except CommandError as ex:  # plain text: nothing to escape
            await msg.reply_text(trim(str(ex), TG_TEXT_LIMIT, measure=tg_len))
            return
        except Exception:
            log.exception("command /%s failed", cmd)
            await msg.reply_text("Something went wrong running that command; it was logged.")
            return
        if reply.photo is not None:
            await msg.reply_photo(reply.photo, caption=_caption(reply.html), parse_mode="HTML")
            return
        for chunk in reply_chunks(reply.html):
            await msg.reply_text(chunk, parse_mode="HTML", disable_web_page_preview=True)

    @staticmethod
    def _name(msg: Message) -> str:
        words = (msg.text or "").split()
        return words[0][1:].split("@", 1)[0].lower()[:32] if words else ""

    async def _unknown(self, update: Update, context: Any) -> None:
        msg = update.effective_message
        if msg is not None:
            await msg.reply_text(f"Unknown command /{shown(self._name(msg))}. Try /help.")

    async def _refuse(self, update: Update, context: Any) -> None:
        msg, user = update.effective_message, update.effective_user
        if msg is None:
            return
        self.refused += 1
        log.warning(
            "refused /%s from user %s (@%s) in chat %s: not in allowed_users",
            self._name(msg),
            user.id if user else "?",
            (user.username or "")[:32] if user else "?",
            msg.chat_id,
        )
        await msg.reply_text("Sorry, you are not allowed to use this bot.")

    async def _migrated(self, update: Update, context: Any) -> None:
        msg = update.effective_message
        if msg is None:
            return
        if msg.migrate_to_chat_id:
            old, new = msg.chat_id, int(msg.migrate_to_chat_id)
        elif msg.migrate_from_chat_id:
            old, new = int(msg.migrate_from_chat_id), msg.chat_id
        else:
            return
        await self.commands.ledger.record_migration(old, new)
        log.warning("Telegram group %s became the supergroup %s; alerts follow it", old, new)

    async def _on_error(self, update: object, context: Any) -> None:
        """Every error a handler raises: logged (the bot token is redacted by the log filter),
        never lost; a chat migration seen here is recorded too."""
        from telegram import Update as TgUpdate
        from telegram.error import ChatMigrated, TelegramError

        err = getattr(context, "error", None)
        chat = update.effective_chat if isinstance(update, TgUpdate) else None
        if isinstance(err, ChatMigrated) and chat is not None:
            await self.commands.ledger.record_migration(chat.id, int(err.new_chat_id))
        if isinstance(err, TelegramError):
            log.warning(
                "command bot: a reply%s failed: %s: %s",
                f" to chat {chat.id}" if chat is not None else "",
                type(err).__name__,
                err,
            )
        else:
            log.error("command bot: handling an update failed", exc_info=err)

    async def dispatch(self, cmd: str, args: list[str], *, requested_by: str = "?") -> Reply:
        c = self.commands
        if cmd == "status":
            return await c.status()
        if cmd == "rules":
            return await c.rules()
        if cmd == "mute":
            return await c.mute(args, requested_by)
        if cmd == "unmute":
            return await c.unmute(args)
        if cmd == "silence":
            return await c.silence(args, requested_by)
        if cmd == "silences":
            return await c.silences()
        if cmd == "unsilence":
            return await c.unsilence(args)
        if cmd == "history":
            return await c.history(args)
        if cmd == "chart":
            return await c.chart(args)
        if cmd == "sessions":
            return await c.sessions(args)
        if cmd == "like":
            return await c.like()
        if cmd == "test":
            return await c.test(args, requested_by)
        if cmd in ("help", "start"):
            return Reply(HELP)
        raise CommandError(f"Unknown command /{shown(cmd)}. Try /help.")


def _caption(text: str) -> str:
    """A photo caption within Telegram's 1024 (our captions are one line of escaped text)."""
    if tg_len(text) <= TG_CAPTION_LIMIT:
        return text
    return html.escape(trim(html.unescape(_strip_tags(text)), TG_CAPTION_LIMIT // 5))
