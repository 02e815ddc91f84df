"""Per-device MQTT passwords derived from one secret (simulated fleets only)."""

from __future__ import annotations

import hashlib
import hmac


def derive_password(secret: str, device_id: str) -> str:
    """A device's password: HMAC-SHA256(secret, device_id) in hex, first 32 characters."""
    return hmac.new(secret.encode(), device_id.encode(), hashlib.sha256).hexdigest()[:32]
