"""Decode and validate one MQTT message into a Reading, a StatusChange or a Rejection.

This is the edge of the system: whatever bytes arrive, `Decoder.decode` returns
a value and never raises. It is on the hot path, so topics are parsed once and
cached, and each (kind, channel) has a prebuilt msgspec decoder.
"""

from __future__ import annotations

from typing import Final

import msgspec

from protocol.exceptions import TopicError
from protocol.models import (
    READING_FIELDS,
    BinEvent,
    BinTelemetry,
    Body,
    Channel,
    Kind,
    Reading,
    Rejection,
    StatusChange,
    WristbandEvent,
    WristbandTelemetry,
)
from protocol.topics import DeviceTopic, parse_topic

_SCHEMAS: Final[dict[tuple[Kind, Channel], type[Body]]] = {
    (Kind.WRISTBAND, Channel.TELEMETRY): WristbandTelemetry,
    (Kind.WRISTBAND, Channel.EVENT): WristbandEvent,
    (Kind.BIN, Channel.TELEMETRY): BinTelemetry,
    (Kind.BIN, Channel.EVENT): BinEvent,
}
_TELEMETRY: Final = (WristbandTelemetry, BinTelemetry)
_TOPIC_CACHE_MAX: Final = 200_000
_STATUS: Final = {b"online": True, b"offline": False}

Decoded = Reading | StatusChange | Rejection


class Decoder:
    """Turns (topic, payload) into typed values; one per consumer, not thread-safe."""

    def __init__(
        self,
        *,
        max_payload_bytes: int = 4096,
        max_future_ms: int = 300_000,
        max_age_ms: int = 7 * 86_400_000,
    ) -> None:
        self._max_payload = max_payload_bytes
        self._max_future_ms = max_future_ms
        self._max_age_ms = max_age_ms
        self._decoders = {key: msgspec.json.Decoder(cls) for key, cls in _SCHEMAS.items()}
        self._topics: dict[str, DeviceTopic | TopicError] = {}

    def topic(self, topic: str) -> DeviceTopic | TopicError:
        """Parse a topic, remembering the answer (devices reuse a handful of topics)."""
        parsed = self._topics.get(topic)
        if parsed is None:
            try:
                parsed = parse_topic(topic)
            except TopicError as exc:
                parsed = exc
            if len(self._topics) >= _TOPIC_CACHE_MAX:
                self._topics.clear()
            self._topics[topic] = parsed
        return parsed

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Decoded:
        """Validate one message; never raises."""
        parsed = self.topic(topic)
        if isinstance(parsed, TopicError):
            return Rejection(parsed.reason, str(parsed))
        kind, device_id, channel = parsed
        if len(payload) > self._max_payload:
            return Rejection(
                "oversized",
                f"payload of {len(payload)} bytes exceeds {self._max_payload}",
                device_id,
            )
        if channel is Channel.STATUS:
            online = _STATUS.get(bytes(payload).strip())
            if online is None:
                return Rejection(
                    "bad_status", "status payload must be the text online or offline", device_id
                )
            return StatusChange(device_id, kind, online, now_ms)
        try:
            body = self._decoders[kind, channel].decode(payload)
        except msgspec.ValidationError as exc:
            text = str(exc)
            reason = "out_of_range" if "` >= " in text or "` <= " in text else "invalid"
            return Rejection(reason, text, device_id)
        except (msgspec.DecodeError, RecursionError) as exc:
            # RecursionError: 2 KB of `[[[[...` in a field nobody reads is too deep to skip.
            return Rejection("bad_json", f"payload is not a UTF-8 JSON object: {exc}", device_id)
        ts = body.ts
        if ts > now_ms + self._max_future_ms:
            return Rejection(
                "ts_future", f"ts {ts} is {(ts - now_ms) / 1000:.0f} s in the future", device_id
            )
        if ts < now_ms - self._max_age_ms:
            return Rejection(
                "ts_too_old", f"ts {ts} is {(now_ms - ts) / 1000:.0f} s in the past", device_id
            )
        if isinstance(body, _TELEMETRY):
            if all(getattr(body, f) is None for f in READING_FIELDS[type(body)]):
                return Rejection("no_reading", "telemetry carries no reading", device_id)
        elif isinstance(body, BinEvent) and body.type == "deposit" and body.detected is None:
            return Rejection("invalid", "a deposit needs `detected`", device_id)
        return Reading(device_id, kind, body)
