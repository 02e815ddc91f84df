"""Topic names of protocol v1: `cw/v1/{kind}/{device_id}/{channel}`."""

from __future__ import annotations

import re
import zlib
from typing import Final, NamedTuple

from protocol.exceptions import TopicError
from protocol.models import Channel, Kind

PREFIX: Final = "cw/v1/"
SUBSCRIPTION: Final = "cw/v1/#"
DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KINDS: Final = {k.value: k for k in Kind}
_CHANNELS: Final = {c.value: c for c in Channel}


class DeviceTopic(NamedTuple):
    kind: Kind
    device_id: str
    channel: Channel


def parse_topic(topic: str) -> DeviceTopic:
    """Split a topic into (kind, device_id, channel), or raise TopicError saying why not."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "cw" or parts[1] != "v1":
        msg = f"topic {topic[:120]!r} is not cw/v1/{{kind}}/{{device_id}}/{{channel}}"
        raise TopicError("bad_topic", msg)
    kind = _KINDS.get(parts[2])
    if kind is None:
        msg = f"unknown device kind {parts[2][:40]!r}: expected wristband or bin"
        raise TopicError("unknown_kind", msg)
    if DEVICE_ID_RE.fullmatch(parts[3]) is None:
        msg = f"device id {parts[3][:80]!r} must be 1-64 of A-Z a-z 0-9 _ -"
        raise TopicError("bad_topic", msg)
    channel = _CHANNELS.get(parts[4])
    if channel is None:
        msg = f"unknown channel {parts[4][:40]!r}: expected telemetry, event or status"
        raise TopicError("unknown_channel", msg)
    return DeviceTopic(kind, parts[3], channel)


def device_topic(kind: Kind | str, device_id: str, channel: Channel | str) -> str:
    """The topic a device publishes on (the inverse of parse_topic)."""
    return f"{PREFIX}{Kind(kind).value}/{device_id}/{Channel(channel).value}"


def partition_of(topic: str, partitions: int) -> int:
    """Which of `partitions` workers owns the device of `topic` (a stable hash of its id).

    Every worker computes the same owner for a device, so all of its readings reach one
    worker (docs/scaling.md). A topic that names no device belongs to partition 0.
    """
    parts = topic.split("/", 4)
    if len(parts) != 5:
        return 0
    return zlib.crc32(parts[3].encode()) % partitions
