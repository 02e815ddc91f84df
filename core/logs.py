"""Structured logging: one line per event, console or JSON (CAREWATCH_LOG_FORMAT)."""

from __future__ import annotations

import logging
import sys
import time

import msgspec

from core.phones import mask_phone

_encoder = msgspec.json.Encoder()


def mask_name(name: str) -> str:
    """张** for 张建国: enough for a grid worker to recognise, not to identify."""
    return name[:1] + "*" * max(len(name) - 1, 1) if name else name


class PersonalDataFilter(logging.Filter):
    """Masks phone numbers in every record, whichever library logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_phone(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            # Tracebacks quote values too; formatters use exc_text when it is set.
            record.exc_text = mask_phone(logging.Formatter().formatException(record.exc_info))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return _encoder.encode(entry).decode()


def configure_logging(level: str = "INFO", fmt: str = "console") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        )
    handler.addFilter(PersonalDataFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO: far too much at thousands of batches.
    # Chatty at INFO about routine work (each request, each notification, each migration step).
    for name in ("httpx", "apprise", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
