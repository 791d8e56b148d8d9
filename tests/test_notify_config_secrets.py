"""Config errors about destinations never print a secret (issue 11, defect 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.errors import ConfigError
from bot.runtime.config import load_config

SECRET = "Zq9-SECRET-webhook-token-abcdefghijklmnopqrstuvwxyz0123456789"
URL = f"https://discord.com/api/webhooks/1200000000000000001/{SECRET}"


def _load(tmp_path: Path, text: str) -> str:
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    return str(e.value)


def test_defect9_a_literal_webhook_url_is_never_echoed_in_the_error(tmp_path: Path) -> None:
    msg = _load(tmp_path, f'[[notify.discord.webhooks]]\nname = "ops"\nurl = "{URL}"\n')
    assert "put it in an environment variable" in msg  # the advice is still given...
    assert "notify.discord.webhooks.0" in msg  # ...with where the problem is...
    assert SECRET not in msg and "discord.com/api/webhooks" not in msg  # ...never the secret


def test_defect9_no_error_about_a_webhook_echoes_its_url(tmp_path: Path) -> None:
    both = _load(
        tmp_path,
        f'[[notify.discord.webhooks]]\nname = "ops"\nurl = "{URL}"\nurl_env = "X"\n',
    )
    assert "exactly one of url_env" in both and SECRET not in both
    loop = f"http://127.0.0.1:9/api/webhooks/1/{SECRET}"
    dup = _load(
        tmp_path,
        f'[[notify.discord.webhooks]]\nname = "ops"\nurl = "{loop}"\n'
        f'[[notify.discord.webhooks]]\nname = "ops"\nurl = "{loop}"\n',
    )
    assert "must be unique" in dup and SECRET not in dup
    bad_name = _load(tmp_path, f'[[notify.discord.webhooks]]\nname = "o p s"\nurl = "{loop}"\n')
    assert "destination name" in bad_name and SECRET not in bad_name
