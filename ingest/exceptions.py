"""Errors of the ingest path, each saying what to do about it."""

from __future__ import annotations


class IngestError(Exception):
    """Base of ingest errors."""


class MqttProtocolError(IngestError):
    """The broker sent bytes that are not MQTT 5."""


class MqttRefusedError(IngestError):
    """The broker refused our connection or subscription (credentials, ACL)."""


class InfluxWriteError(IngestError):
    """A write InfluxDB did not take; `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class SpoolError(IngestError):
    """The spool folder cannot be written: the disk is full or not writable."""
