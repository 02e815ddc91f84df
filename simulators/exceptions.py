"""Errors of the simulators package, each saying what was wrong and how to fix it."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base of every error the simulators raise on purpose."""


class DurationError(SimulatorError, ValueError):
    """A duration text such as `10s` that could not be parsed."""


class ScenarioError(SimulatorError, ValueError):
    """A scenario spec or scenario file that is malformed or names an unknown device."""


class ConfigError(SimulatorError, ValueError):
    """A fleet configuration that cannot work (bad prefix, negative counts, ...)."""


class LinkDown(SimulatorError):
    """A publish did not reach the broker: the connection is down or the PUBACK timed out."""
