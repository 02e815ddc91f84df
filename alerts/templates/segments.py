"""SMS segments as carriers bill them."""

from __future__ import annotations

from typing import Final

_GSM7: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT: Final = frozenset("^{}\\[~]|€\f")  # an escape and the character: two septets


def sms_length(text: str) -> int:
    """Segments as carriers count them: 70/67 UCS-2 units with any Chinese, else 160/153."""
    if not text:
        return 0
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        costs = [2 if c in _GSM7_EXT else 1 for c in text]
        single, part = 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]  # a surrogate pair
        single, part = 70, 67
    if sum(costs) <= single:
        return 1
    # An escape pair or a surrogate pair is never split across two parts.
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments
