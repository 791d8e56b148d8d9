"""`stressbot config check` and `stressbot --version`: ready-to-run checks that print no secret."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import bot
from bot.engine.rulefile import default_rules_dir, load_rules
from bot.runtime.config import Config

ROOT = Path(__file__).resolve().parent.parent
SECRET = "https://discord.test/api/webhooks/1/s3cret-token-value"


def _stressbot(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
    )


CONFIG = """
[notify.telegram]
token_env = "TEST_TG_TOKEN"
[[notify.telegram.chats]]
name = "desk"
chat_id = -100123
[[notify.discord.webhooks]]
name = "ops"
url_env = "TEST_DC_URL"
"""


def test_version_prints_the_package_version() -> None:
    out = _stressbot("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"stressbot {bot.__version__}"


def test_config_check_passes_the_embedded_defaults() -> None:
    out = _stressbot("config", "check")
    assert out.returncode == 0, out.stderr
    shipped = len(load_rules(default_rules_dir(), Config().sessions).rules)
    assert f"embedded defaults: valid; {shipped} rule(s)" in out.stdout


def test_config_check_names_each_missing_secret_variable(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    out = _stressbot("config", "check", "--config", str(cfg))
    assert out.returncode == 1
    assert "notify.telegram: the bot token variable TEST_TG_TOKEN is not set" in out.stdout
    assert "notify.discord.webhooks[ops]: the webhook URL variable TEST_DC_URL" in out.stdout
    assert "2 missing secret(s)" in out.stdout


def test_config_check_with_secrets_set_prints_none_of_them(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    env = {"TEST_TG_TOKEN": "123456:ABCDEFsecret", "TEST_DC_URL": SECRET}
    out = _stressbot("config", "check", "--config", str(cfg), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "every secret it needs is set" in out.stdout
    for secret in env.values():
        assert secret not in out.stdout + out.stderr


def test_config_check_reports_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text("[engine]\ncheckpoint_every = 'soon'\n")
    out = _stressbot("config", "check", "--config", str(cfg))
    assert out.returncode == 2
    assert "engine.checkpoint_every" in out.stderr and "expected a duration" in out.stderr
    assert "Traceback" not in out.stderr
