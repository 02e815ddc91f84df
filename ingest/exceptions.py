"""Errors of the ingest path, each saying what to do about it."""

from __future__ import annotations


class IngestError(Exception):
    """Base of ingest errors."""


class MqttProtocolError(IngestError):
    """The broker sent bytes that are not MQTT 5."""


class MqttRefusedError(IngestError):
    """The broker refused our connection or subscription (credentials, ACL)."""


class SpoolError(IngestError):
    """The spool folder cannot be written: the disk is full or not writable."""
