"""Where rejected messages go: a rotating JSON-lines file and the dead-letter topic.

Operators read `$CAREWATCH_STATE_DIR/deadletter.jsonl` (10 MB x 5 files) or
subscribe to `cw/v1/deadletter`; each entry says why, what and from where.
"""

from __future__ import annotations

import base64
import logging
import logging.handlers
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from protocol.models import Rejection

PAYLOAD_KEEP: Final = 1024
log = logging.getLogger(__name__)


class DeadLetterEntry(msgspec.Struct, omit_defaults=True):
    """One rejected message as operators read it: why, what and from where."""

    reason: str
    detail: str
    topic: str
    received_ms: int
    device_id: str | None = None
    payload: str | None = None
    payload_b64: str | None = None


class DeadLetters:
    """Records rejections; `publish` is the MQTT side (QoS 0), absent when offline."""

    def __init__(
        self,
        path: Path,
        *,
        publish: Callable[[bytes], object] | None = None,
        max_bytes: int = 10 * 1024 * 1024,
        backups: int = 5,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._publish = publish
        self._file = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self._file.setFormatter(logging.Formatter("%(message)s"))
        self._encoder = msgspec.json.Encoder()

    def set_publisher(self, publish: Callable[[bytes], object] | None) -> None:
        """Where entries are published on MQTT (QoS 0); None while offline."""
        self._publish = publish

    def record(self, rejection: Rejection, topic: str, payload: bytes, received_ms: int) -> None:
        """Log one rejection with its payload (the first 1 KiB) and publish it; never raises."""
        kept = payload[:PAYLOAD_KEEP]
        try:
            text, b64 = kept.decode("utf-8"), None
        except UnicodeDecodeError:
            text, b64 = None, base64.b64encode(kept).decode("ascii")
        entry = DeadLetterEntry(
            reason=rejection.reason,
            detail=rejection.detail,
            topic=topic[:256],
            received_ms=received_ms,
            device_id=rejection.device_id,
            payload=text,
            payload_b64=b64,
        )
        line = self._encoder.encode(entry)
        self._file.emit(
            logging.LogRecord("deadletter", logging.WARNING, "", 0, line.decode(), None, None)
        )
        if self._publish is not None:
            self._publish(line)

    def close(self) -> None:
        """Close the file."""
        self._file.close()
