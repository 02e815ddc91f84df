"""Errors of the simulators package, each saying what was wrong and how to fix it."""

from __future__ import annotations

__all__ = ["BrokerRefused", "ConfigError", "LinkDown", "ScenarioError", "SimulatorError"]


class SimulatorError(Exception):
    """Base of every error the simulators raise on purpose."""


class ScenarioError(SimulatorError, ValueError):
    """A scenario spec or scenario file that is malformed or names an unknown device."""


class ConfigError(SimulatorError, ValueError):
    """A fleet configuration that cannot work (bad prefix, negative counts, ...)."""


class LinkDown(SimulatorError):
    """A publish did not reach the broker: the connection is down or the PUBACK timed out."""


class BrokerRefused(SimulatorError):
    """The broker answered CONNECT with a failure reason code (bad password, not authorized)."""

    def __init__(self, message: str, reason_code: int) -> None:
        super().__init__(message)
        self.reason_code = reason_code
