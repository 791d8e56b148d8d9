"""Configuration: errors name the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.durations import format_duration, parse_duration
from bot.core.errors import ConfigError, DurationError
from bot.runtime.config import Config, load_config


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_no_file_gives_the_embedded_defaults() -> None:
    cfg = load_config(None)
    assert cfg == Config()
    assert set(cfg.sessions) == {"asia", "europe", "us"}


def test_unknown_key_is_named_with_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "[engine]\ncheckpoint_evry = '5s'\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}: engine.checkpoint_evry: unknown key" in str(e.value)


def test_bad_duration_says_what_was_expected(tmp_path: Path) -> None:
    p = _write(tmp_path, "[engine]\ncheckpoint_every = 'soon'\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "engine.checkpoint_every" in msg and "expected a duration" in msg and "'soon'" in msg


def test_wrong_type_is_reported(tmp_path: Path) -> None:
    p = _write(tmp_path, "[redis]\ntick_maxlen = 'many'\n")
    with pytest.raises(ConfigError, match=r"redis\.tick_maxlen"):
        load_config(p)


def test_unknown_time_zone_is_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, "[display]\ntimezone = 'Mars/Olympus'\n")
    with pytest.raises(ConfigError, match="IANA time zone"):
        load_config(p)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    p = _write(tmp_path, "[engine\n")
    with pytest.raises(ConfigError, match=f"{p}: not valid TOML"):
        load_config(p)


def test_redis_url_from_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = _write(tmp_path, "[redis]\nurl = 'redis://file-host:6379/0'\n")
    monkeypatch.setenv("REDIS_URL", "redis://env-host:6380/2")
    assert load_config(p).redis_url == "redis://env-host:6380/2"
    monkeypatch.delenv("REDIS_URL")
    assert load_config(p).redis_url == "redis://file-host:6379/0"


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parent.parent / "config.example.toml"
    load_config(example)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("15m", 900),
        ("4h", 14400),
        ("5d", 432000),
        ("2w", 1209600),
        ("1h30m", 5400),
    ],
)
def test_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "5x", "h", "-5m", "1.5.h"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


def test_a_directory_in_place_of_the_config_file_says_so(tmp_path: Path) -> None:
    d = tmp_path / "config.toml"
    d.mkdir()  # what Docker mounts when ./config.toml does not exist
    with pytest.raises(ConfigError) as e:
        load_config(d)
    assert f"{d}: is a directory, not a config file" in str(e.value)
