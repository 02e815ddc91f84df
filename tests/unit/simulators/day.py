"""A simulated day of a small fleet with every scenario, and helpers to read its messages."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec

from core.durations import parse_duration
from protocol.models import Channel
from simulators import scenarios
from simulators.models import FleetConfig, Message

CST = timezone(timedelta(hours=8))
MIDNIGHT_MS = int(datetime(2026, 11, 28, tzinfo=CST).timestamp() * 1000)  # 00:00 China time
DAY = 86_400.0

EVERY_SCENARIO = (
    "fall@w0000+9h",
    "sos@w0001+10h30m",
    "tachycardia@w0002+14h-14h30m",
    "spo2_drop@w0003+15h-15h20m",
    "no_movement@w0004+9h-12h",
    "off_wrist@w0005+13h-14h",
    "silent@w0006+16h-17h",
    "low_battery@w0007+18h-19h",
    "bin_overflow@b0000+12h-13h",
    "sorting_errors@b0001+8h-8h30m",
    "bin_fire@b0002+20h-20h30m",
    "silent@b0003+3h-4h",
)


def day_config(**overrides: object) -> FleetConfig:
    """Eight wristbands and eight bins at a 60 s interval, with every scenario once."""
    incidents = tuple(scenarios.parse_spec(s) for s in EVERY_SCENARIO)
    config = FleetConfig(wristbands=8, bins=8, interval=60.0, seed=7, incidents=incidents)
    return replace(config, **overrides)  # type: ignore[arg-type]


def body(message: Message) -> dict[str, Any]:
    """The decoded JSON payload."""
    decoded = msgspec.json.decode(message.payload)
    assert isinstance(decoded, dict)
    return decoded


def of(messages: list[Message], device: str, channel: Channel) -> list[dict[str, Any]]:
    """The payloads of one device on one channel."""
    return [body(m) for m in messages if m.device_id == device and m.channel is channel]


def at(offset: str) -> int:
    """The ts of an offset such as `14h30m` into the day."""
    return MIDNIGHT_MS + round(parse_duration(offset) * 1000)
