"""Errors of the simulators package, each saying what was wrong and how to fix it."""

from __future__ import annotations

from core.durations import DurationError

__all__ = ["ConfigError", "DurationError", "LinkDown", "ScenarioError", "SimulatorError"]


class SimulatorError(Exception):
    """Base of every error the simulators raise on purpose."""


class ScenarioError(SimulatorError, ValueError):
    """A scenario spec or scenario file that is malformed or names an unknown device."""


class ConfigError(SimulatorError, ValueError):
    """A fleet configuration that cannot work (bad prefix, negative counts, ...)."""


class LinkDown(SimulatorError):
    """A publish did not reach the broker: the connection is down or the PUBACK timed out."""
