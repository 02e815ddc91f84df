"""The one settings class: environment variables `CAREWATCH_*`, optionally a TOML file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_ENV = "CAREWATCH_CONFIG"


MIN_SECRET_KEY_BYTES: Final = 32
# Keys that were ever shipped in this repository (compose's old default): refused.
PUBLIC_SECRET_KEYS: Final = frozenset({"carewatch-dev-secret-change-me"})
_KEY_HINT: Final = "the output of `openssl rand -base64 48`, or leave it unset for a generated one"


class IngestTuning(BaseModel):
    """Knobs of the ingest path; the defaults suit a small site."""

    batch_size: int = Field(5000, ge=1, le=100_000, description="points per InfluxDB write")
    flush_interval: float = Field(0.2, gt=0, le=60, description="seconds a partial batch waits")
    receive_maximum: int = Field(
        20_000, ge=1, le=65_535, description="MQTT 5 in-flight window: unacked messages at most"
    )
    session_expiry: int = Field(
        7 * 24 * 3600, ge=60, description="seconds the broker keeps our session while we are away"
    )
    client_id: str = Field(
        "carewatch-ingest", description="MQTT client id; fixed, so the session persists"
    )
    max_payload_bytes: int = Field(4096, ge=64)
    max_future_skew: float = Field(300.0, ge=0, description="seconds a ts may lie in the future")
    max_age: float = Field(7 * 24 * 3600.0, ge=60, description="seconds a ts may lie in the past")
    retry_attempts: int = Field(
        3, ge=1, description="InfluxDB tries before a batch goes to the spool"
    )
    retry_backoff: float = Field(0.2, gt=0, description="first retry delay, doubled each time")
    spool_replay_interval: float = Field(2.0, gt=0)
    downstream_queue: int = Field(10_000, ge=1, description="readings queued for the rules at most")
    deadletter_topic: str = "cw/v1/deadletter"
    partition: str | None = Field(
        None,
        pattern=r"^[0-9]+/[1-9][0-9]*$",
        description="this worker's share of the fleet, i/n (0-based): the devices whose id "
        "hashes to i; every worker reads every message and keeps its own (docs/scaling.md)",
    )
    devices_file: Path | None = Field(
        None, description="CSV of device_id,kind,grid,building,category giving tags to points"
    )

    @field_validator("partition")
    @classmethod
    def _partition(cls, value: str | None) -> str | None:
        if value is not None:
            index, count = (int(n) for n in value.split("/"))
            if index >= count:
                msg = f"partition {value!r}: i must be below n (0/2 and 1/2 for two workers)"
                raise ValueError(msg)
        return value

    @property
    def share(self) -> tuple[int, int] | None:
        """(i, n) of `partition`, None: this worker reads the whole fleet."""
        if self.partition is None:
            return None
        index, count = self.partition.split("/")
        return int(index), int(count)


class RulesTuning(BaseModel):
    """The rule engine in the ingest process: its rules file and its rhythm."""

    enabled: bool = Field(True, description="judge readings as they arrive (ingest and run)")
    file: Path | None = Field(
        None, description="rules TOML laid over rules/default.toml; reloaded when it changes"
    )
    tick_interval: float = Field(5.0, gt=0, le=60, description="seconds between time checks")
    checkpoint_interval: float = Field(
        30.0, gt=0, description="seconds between state checkpoints (and one at stop)"
    )
    refresh_interval: float = Field(
        60.0, gt=0, description="seconds between re-reads of the registry and the rules file"
    )


class AlertsTuning(BaseModel):
    """Who hears of an alert, by which channel, and how it climbs when nobody answers."""

    enabled: bool = Field(True, description="turn findings into alerts and send notifications")
    sms_url: str | None = Field(
        None,
        description="apprise URL for SMS with a {phone} placeholder, e.g. "
        "aliyunsms://KEY:SECRET@签名/SMS_123/{phone}; unset: no SMS",
    )
    wechat_url: str | None = Field(
        None,
        description="apprise URL for a WeChat target with a {wechat} placeholder (e.g. a WeCom "
        "app user); a person's WeChat target that is itself a URL (wecombot://...) is used as is",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="where people reach the API: the base of ack links"
    )
    critical_escalate_after: float = Field(300.0, gt=0, description="seconds before a rung up")
    warning_escalate_after: float = Field(1800.0, gt=0)
    reminder_max: float = Field(7200.0, gt=0, description="longest gap between reminders")
    quiet_hours: str = Field(
        "22:00-07:00", description="non-critical notifications wait for the end of these"
    )
    group_window: float = Field(
        1800.0,
        ge=0,
        description="seconds in which another rule of the same resident joins its alert",
    )
    flap_window: float = Field(3600.0, ge=0, description="a cleared alert back within this reopens")
    flap_count: int = Field(3, ge=1, description="reopenings in the window that mark it flapping")
    retry_attempts: int = Field(3, ge=1, description="tries on one channel before the next one")
    retry_backoff: float = Field(2.0, gt=0, description="first retry delay, doubled each time")
    link_lifetime: float = Field(86400.0, gt=0, description="seconds an ack link stays valid")
    language: str = Field("zh", pattern="^(zh|en)$")
    timezone: str = "Asia/Shanghai"
    dispatch_interval: float = Field(0.5, gt=0, le=10)
    digest_at: str = Field(
        "08:00", description="local time of the daily digest of information-level findings"
    )


class Settings(BaseSettings):
    """Everything an operator sets. Build once in an entry point and pass it in."""

    model_config = SettingsConfigDict(
        env_prefix="CAREWATCH_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    mqtt_url: str = "mqtt://127.0.0.1:1883"
    mqtt_share_group: str | None = None
    influx_url: str = "http://127.0.0.1:8086"
    influx_database: str = "carewatch"
    influx_token: str | None = None
    database_url: str | None = None
    mqtt_admin_url: str | None = Field(
        None, description="broker account allowed to manage device credentials (dynamic security)"
    )
    secret_key: str | None = Field(
        None, description="signs access tokens; default: a random key kept in the state folder"
    )
    state_dir: Path = Path("./var")
    http_listen: str = "127.0.0.1:8000"
    log_format: str = Field("console", pattern="^(console|json)$")
    log_level: str = "INFO"
    ingest: IngestTuning = Field(default_factory=IngestTuning)
    rules: RulesTuning = Field(default_factory=RulesTuning)
    alerts: AlertsTuning = Field(default_factory=AlertsTuning)

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str | None) -> str | None:
        # It signs admin tokens and acknowledgement links: a guessable key gives both away.
        if value is None:
            return None
        if value in PUBLIC_SECRET_KEYS:
            msg = (
                "CAREWATCH_SECRET_KEY is a value published with CareWatch; "
                f"set your own, e.g. {_KEY_HINT}"
            )
            raise ValueError(msg)
        if len(value.encode()) < MIN_SECRET_KEY_BYTES:
            msg = (
                f"CAREWATCH_SECRET_KEY has {len(value.encode())} bytes, fewer than "
                f"{MIN_SECRET_KEY_BYTES}; set a long random value, e.g. {_KEY_HINT}"
            )
            raise ValueError(msg)
        return value

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            msg = f"CAREWATCH_MQTT_URL must look like mqtt://user:pass@host:1883, got {value!r}"
            raise ValueError(msg)
        return value

    @field_validator("http_listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not host:
            msg = f"CAREWATCH_HTTP_LISTEN must be host:port such as 127.0.0.1:8000, got {value!r}"
            raise ValueError(msg)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_FILE_ENV)
        if config_file:
            path = Path(config_file)
            if not path.is_file():
                msg = f"{CONFIG_FILE_ENV}={config_file} does not name a readable TOML file"
                raise FileNotFoundError(msg)
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    # Derived views, so no other module parses URLs.

    @property
    def mqtt(self) -> MqttTarget:
        return MqttTarget.from_url(self.mqtt_url)

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http_listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def database_url_resolved(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.state_dir / 'carewatch.db'}"


class MqttTarget(BaseModel):
    """A broker address with credentials, parsed from CAREWATCH_MQTT_URL."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None

    @classmethod
    def from_url(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (8883 if tls else 1883),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def load_settings(**overrides: Any) -> Settings:
    """Read the environment (and CAREWATCH_CONFIG's TOML file); explicit overrides win."""
    return Settings(**overrides)
