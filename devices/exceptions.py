"""The registry's errors: one root, each error with a Chinese and an English message.

No HTTP status here: `api/errors.py` decides how the API answers each class.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "DevicesError",
    "DirectoryError",
    "DynsecConfigError",
    "ForbiddenError",
    "ImportFileError",
    "InvalidInputError",
    "NotFoundError",
    "ProvisioningError",
    "RegistryError",
    "conflict",
    "forbidden",
    "not_found",
]


class DevicesError(Exception):
    """Base of every error the registry package raises."""


class RegistryError(DevicesError):
    """A refused registry operation: a machine `code` and the message in Chinese and English."""

    def __init__(self, code: str, message: str, message_en: str) -> None:
        super().__init__(message_en)
        self.code = code
        self.message = message
        self.message_en = message_en


class NotFoundError(RegistryError):
    """The record does not exist, or lies outside the caller's scope (ids cannot be probed)."""


class ForbiddenError(RegistryError):
    """The caller's role may not do this."""


class ConflictError(RegistryError):
    """The change clashes with what is already there (a taken name, a revoked device)."""


class InvalidInputError(RegistryError):
    """Well-formed, but the registry cannot take it (a wrong kind, an unknown need)."""


class DirectoryError(DevicesError, ValueError):
    """A device file that cannot be used; the message names the file and row."""


class ImportFileError(DevicesError):
    """A spreadsheet that cannot be imported at all; `message` is Chinese."""

    def __init__(self, message: str, message_en: str) -> None:
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en


class ProvisioningError(DevicesError):
    """The broker did not take a provisioning command; the message says what to do."""


class DynsecConfigError(DevicesError):
    """The dynamic-security config cannot be written; the message says what to fix."""


def not_found(what_zh: str, what_en: str) -> NotFoundError:
    """`未找到<what>` / `<what> not found`."""
    return NotFoundError("not_found", f"未找到{what_zh}", f"{what_en} not found")


def forbidden() -> ForbiddenError:
    """The generic refusal of a role."""
    return ForbiddenError("forbidden", "没有权限进行此操作", "your role may not do this")


def conflict(message: str, message_en: str) -> ConflictError:
    """A conflict with the code `conflict`."""
    return ConflictError("conflict", message, message_en)
