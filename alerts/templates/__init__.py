"""Alert messages: what a finding means, in one short SMS or WeChat text per audience.

Pure functions, no clock, no I/O; how messages are kept short: docs/alerts.md, "Messages".
"""

from __future__ import annotations

from alerts.templates.bundle import bundle
from alerts.templates.context import DEFAULT_TZ, Audience, Lang, MessageContext, MessageKind
from alerts.templates.digest import digest
from alerts.templates.render import render
from alerts.templates.segments import sms_length

__all__ = [
    "DEFAULT_TZ",
    "Audience",
    "Lang",
    "MessageContext",
    "MessageKind",
    "bundle",
    "digest",
    "render",
    "sms_length",
]
