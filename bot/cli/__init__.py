"""The `stressbot` command line: one module per command, wired up in :mod:`bot.cli.commands`."""
