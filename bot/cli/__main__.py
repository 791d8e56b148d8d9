"""``python -m bot.cli``: the same as the ``stressbot`` command."""

from bot.cli.main import main

raise SystemExit(main())
