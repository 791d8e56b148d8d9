"""Alerts out: the outbox consumers that deliver to Telegram and Discord."""
