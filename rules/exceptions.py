"""The rule engine's errors: one root, `RulesError`, for callers that catch them all."""

from __future__ import annotations


class RulesError(Exception):
    """Something the rule engine cannot work with."""


class RulesFileError(RulesError, ValueError):
    """A rules file that cannot be used; the message names the file and the key."""


class CheckpointError(RulesError, ValueError):
    """A checkpoint this engine cannot restore (written by another version)."""
