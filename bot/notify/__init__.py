"""Alerts out: the outbox consumers that deliver to Telegram and Discord.

Entry points for the rest of the bot:

- :func:`deliver_pending` drains the outbox to every destination and returns a report.
- :class:`NotifierService` delivers continuously until its stop event is set.
"""

from bot.notify.base import DeliveryReport, DestinationReport
from bot.notify.service import NotifierService, deliver_pending

__all__ = ["DeliveryReport", "DestinationReport", "NotifierService", "deliver_pending"]
