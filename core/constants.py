"""Names shared by the rules, the alerts and the API."""

from __future__ import annotations

from typing import Final

# Rules whose alerts stay open until a person resolves them, whatever the readings say next.
LATCHED_RULES: Final = frozenset({"fall", "sos"})

# Severities in rising order; an alert only ever moves up.
SEVERITY_RANK: Final = {"info": 0, "warning": 1, "critical": 2}
