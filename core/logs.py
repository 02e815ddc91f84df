"""Structured logging: one line per event, console or JSON (CAREWATCH_LOG_FORMAT)."""

from __future__ import annotations

import logging
import re
import sys
import time

import msgspec

_encoder = msgspec.json.Encoder()
# Chinese mobile numbers (with or without +86) and landlines: personal data, never logged whole.
_PHONE = re.compile(
    r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)"  # mobile
    r"|(?<!\d)(0\d{2,3}-?)\d{4}(\d{3,4})(?!\d)"  # landline with area code
)


def mask_phone(text: str) -> str:
    """138****8000 for every phone number in the text."""

    def repl(match: re.Match[str]) -> str:
        if match.group(1):
            return f"{match.group(1)}****{match.group(3)}"
        return f"{match.group(4)}****{match.group(5)}"

    return _PHONE.sub(repl, text)


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
