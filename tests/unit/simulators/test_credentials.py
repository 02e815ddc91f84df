"""Per-device passwords derived from the fleet secret."""

from __future__ import annotations

import hashlib
import hmac

from simulators import credentials


def test_derive_password() -> None:
    expected = hmac.new(b"s3cret", b"w0001", hashlib.sha256).hexdigest()[:32]
    assert credentials.derive_password("s3cret", "w0001") == expected
    assert len(expected) == 32
    assert credentials.derive_password("s3cret", "w0002") != expected
