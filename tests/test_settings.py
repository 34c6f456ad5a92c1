from __future__ import annotations

import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from control_center.settings import SettingsError, load_settings, parse_sessions


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("CC_"):
            monkeypatch.delenv(key)


def test_defaults_run_on_one_machine() -> None:
    settings = load_settings()
    assert settings.province == "08"
    assert settings.database_url.startswith("sqlite:///")
    assert settings.database_url.endswith("var/control_center.db")
    assert (settings.web_host, settings.web_port) == ("127.0.0.1", 8050)
    target = settings.mqtt_parts()
    assert (target.host, target.port, target.tls) == ("127.0.0.1", 1883, False)


def test_environment_prefix_and_province_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_PROVINCE", "1")
    monkeypatch.setenv("CC_WEB_PORT", "9000")
    settings = load_settings()
    assert settings.province == "01"
    assert settings.web_port == 9000


def test_config_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "cc.toml"
    cfg.write_text('[control_center]\nprovince = "79"\nweb_port = 8100\n')
    monkeypatch.setenv("CC_CONFIG_FILE", str(cfg))
    assert load_settings().province == "79"
    monkeypatch.setenv("CC_PROVINCE", "08")
    settings = load_settings()
    assert settings.province == "08"
    assert settings.web_port == 8100


@pytest.mark.parametrize(
    ("env", "value", "fragment"),
    [
        ("CC_PROVINCE", "99", "not one of the 34 province codes"),
        ("CC_DATABASE_URL", "not a url", "not a SQLAlchemy URL"),
        ("CC_DATABASE_URL", "mysql://x@y/z", "not supported"),
        ("CC_MQTT_URL", "http://broker:1883", "mqtt://"),
        ("CC_MQTT_URL", "mqtt://broker:abc", "invalid port"),
        ("CC_WORKING_SESSIONS", "13:30-17:00,07:00-11:30", "increasing"),
    ],
)
def test_a_wrong_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC_MQTT_URL", "mqtts://centre:s3cret@broker.example:8883")
    monkeypatch.setenv("CC_DATABASE_URL", "postgresql://cc:hunter2@db/cc")
    settings = load_settings()
    shown = str(settings.redacted())
    assert "s3cret" not in shown and "hunter2" not in shown
    assert "mqtts://centre:***@broker.example:8883" in shown
    assert "s3cret" not in repr(settings)
    target = settings.mqtt_parts()
    assert (target.username, target.password, target.tls, target.port) == (
        "centre",
        "s3cret",
        True,
        8883,
    )


def test_working_sessions_parse() -> None:
    assert parse_sessions("07:00-11:30,13:30-17:00") == (
        (time(7), time(11, 30)),
        (time(13, 30), time(17)),
    )


def test_cli_reports_a_bad_setting_without_traceback(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CC_PROVINCE": "99", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "control_center.cli", "settings"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "control-center: invalid setting province: CC_PROVINCE '99' is not one of the 34 province codes"
    ]
