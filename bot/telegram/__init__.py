"""The Telegram command bot (/status, /mute, ...), answering only the chats that get alerts."""
