"""Errors of the wire contract: bytes or topics outside protocol v1."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Base of the protocol's errors (a ValueError: it is bad input, said how)."""


class TopicError(ProtocolError):
    """A topic outside protocol v1; `reason` is the rejection label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class PacketError(ProtocolError):
    """MQTT bytes that cannot be parsed or a packet that breaks the MQTT 5 rules."""
