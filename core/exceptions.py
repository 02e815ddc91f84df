"""Errors of the kernel, each saying what to do about it."""

from __future__ import annotations


class CoreError(Exception):
    """Base of the kernel's errors."""


class InfluxWriteError(CoreError):
    """A write InfluxDB did not take; `retryable` says whether trying again can help."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class JournalError(CoreError):
    """The journal folder cannot be written or read: the disk is full or not writable."""
