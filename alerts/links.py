"""Signed, expiring acknowledgement links short enough for an SMS.

A token names the alert, the person it was sent to and when it expires, with a
truncated HMAC-SHA256 over them under the service's secret key:
`<alert hex>-<expiry hex>-<recipient>-<mac>`, about 40 characters. Whoever
holds the link may acknowledge that one alert as that person, until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from core.secrets import derive_key

_MAC_CHARS: Final = 16  # 96 bits of HMAC: forging one is out of reach
_TOKEN: Final = re.compile(r"([0-9a-f]{1,12})-([0-9a-f]{1,12})-([cud][0-9]{1,12})-([A-Za-z0-9_-]+)")
_KINDS: Final = {"contact": "c", "user": "u", "duty": "d"}
_NAMES: Final = {v: k for k, v in _KINDS.items()}


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says: which alert, sent to whom, valid until when."""

    alert_id: int
    recipient_key: str  # contact:12, user:5, duty:3
    expires_s: int


def _mac(secret: str, payload: str) -> str:
    key = derive_key(secret, "ack-link")  # not the access tokens' key (core.secrets)
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_MAC_CHARS]


def sign(secret: str, alert_id: int, recipient_key: str, expires_s: int) -> str:
    """The token of an ack link for one alert and one person, valid until `expires_s`."""
    kind, _, number = recipient_key.partition(":")
    payload = f"{alert_id:x}-{expires_s:x}-{_KINDS[kind]}{int(number)}"
    return f"{payload}-{_mac(secret, payload)}"


def verify(secret: str, token: str, now_s: int) -> LinkClaim | None:
    """The claim of a valid, unexpired token; None for anything else (never raises)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    alert_hex, expiry_hex, recipient, mac = match.groups()
    payload = f"{alert_hex}-{expiry_hex}-{recipient}"
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    expires = int(expiry_hex, 16)
    if expires < now_s:
        return None
    return LinkClaim(int(alert_hex, 16), f"{_NAMES[recipient[0]]}:{recipient[1:]}", expires)
