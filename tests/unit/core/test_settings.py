"""The one settings class: environment, TOML file, and errors that name the variable."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]  # apprise depends on it; no stubs installed
from pydantic import ValidationError

from carewatch.cli import main
from core.settings import Settings


def test_defaults_match_the_design_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CAREWATCH_MQTT_URL", "CAREWATCH_INFLUX_URL", "CAREWATCH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.mqtt_url == "mqtt://127.0.0.1:1883"
    assert settings.influx_url == "http://127.0.0.1:8086"
    assert settings.influx_database == "carewatch"
    assert settings.http_listen == "127.0.0.1:8000"
    assert settings.state_dir == Path("./var")
    assert settings.database_url_resolved.startswith("sqlite+aiosqlite:///")


def test_environment_and_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREWATCH_MQTT_URL", "mqtts://dev%40x:p%3Ass@broker.local")
    monkeypatch.setenv("CAREWATCH_INGEST__BATCH_SIZE", "123")
    monkeypatch.setenv("CAREWATCH_MQTT_SHARE_GROUP", "carewatch")
    settings = Settings()
    mqtt = settings.mqtt
    assert (mqtt.host, mqtt.port, mqtt.tls) == ("broker.local", 8883, True)
    assert (mqtt.username, mqtt.password) == ("dev@x", "p:ss")
    assert settings.ingest.batch_size == 123
    assert settings.mqtt_share_group == "carewatch"


def test_toml_file_and_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "carewatch.toml"
    config.write_text(
        'influx_database = "from_file"\nhttp_listen = "127.0.0.1:9000"\n'
        "[ingest]\nflush_interval = 0.5\n"
    )
    monkeypatch.setenv("CAREWATCH_CONFIG", str(config))
    monkeypatch.setenv("CAREWATCH_HTTP_LISTEN", "127.0.0.1:9100")
    settings = Settings()
    assert settings.influx_database == "from_file"
    assert settings.ingest.flush_interval == 0.5
    assert settings.http_host_port == ("127.0.0.1", 9100)


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("CAREWATCH_MQTT_URL", "http://x", "mqtt://user:pass@host:1883"),
        ("CAREWATCH_HTTP_LISTEN", "8000", "host:port"),
        ("CAREWATCH_INGEST__BATCH_SIZE", "0", "batch_size"),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=says):
        Settings()


def test_cli_reports_bad_configuration(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CAREWATCH_MQTT_URL", "ftp://nowhere")
    assert main(["ingest"]) == 2
    assert "bad configuration" in capsys.readouterr().err


def test_missing_config_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREWATCH_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(FileNotFoundError, match=r"nope\.toml"):
        Settings()


def test_a_partition_is_i_of_n() -> None:
    assert Settings(ingest={"partition": "1/3"}).ingest.share == (1, 3)
    assert Settings().ingest.share is None
    for bad in ("3/3", "1/0", "one/two", "1"):
        with pytest.raises(ValidationError, match="partition"):
            Settings(ingest={"partition": bad})


def test_every_compose_service_sets_only_settings_that_exist(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docker-compose.yml cannot run here: at least its CAREWATCH_ variables must parse."""
    compose = yaml.safe_load((Path(__file__).parents[3] / "docker-compose.yml").read_text())
    default = re.compile(r"\$\{[A-Z_]+:-([^}]*)\}")
    required = re.compile(r"\$\{[A-Z_]+:\?[^}]*\}")  # must be set: a value an operator would
    shares = []
    for name, service in compose["services"].items():
        env = {
            k: required.sub("operator-set-value-" + "0" * 32, default.sub(r"\1", str(v)))
            for k, v in (service.get("environment") or {}).items()
        }
        if not any(k.startswith("CAREWATCH_") for k in env):
            continue
        for key in [k for k in os.environ if k.startswith("CAREWATCH_")]:
            monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # raises on a misspelt nested variable (extra="forbid")
        if settings.ingest.share is not None:
            shares.append((settings.ingest.share, settings.ingest.client_id, name))
    # The cluster's workers: every partition once, each with its own session.
    assert sorted(s for s, _, _ in shares) == [(0, 2), (1, 2)]
    assert len({client for _, client, _ in shares}) == len(shares)


@pytest.mark.parametrize(
    ("key", "says"),
    [("carewatch-dev-secret-change-me", "published"), ("change-me", "fewer than 32")],
)
def test_a_known_or_short_secret_key_is_refused(key: str, says: str) -> None:
    """It signs admin tokens and ack links: a public or guessable one gives both away."""
    with pytest.raises(ValidationError, match=says):
        Settings(secret_key=key)
    assert Settings(secret_key="x" * 32).secret_key == "x" * 32
    assert Settings().secret_key is None  # unset: a random key in the state folder
