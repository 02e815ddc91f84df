"""Phone numbers, one way: how they are recognised, normalised and masked everywhere."""

from __future__ import annotations

import re
from typing import Final

# A Chinese mobile (with +86, 0086 or 86 before it) or a landline with its area code.
_MOBILE: Final = re.compile(r"(?:\+?86|0086)?(1[3-9]\d{9})")
_LANDLINE: Final = re.compile(r"0\d{2,3}-?\d{7,8}(?:-\d{1,6})?")
_INTERNATIONAL: Final = re.compile(r"(?:\+|00)([1-9]\d{6,14})")  # E.164: at most 15 digits
# Any of them inside free text (log lines, provider replies), to be masked.
_IN_TEXT: Final = re.compile(
    r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)"  # mobile
    r"|(?<!\d)(0\d{2,3}-?)\d{4}(\d{3,4})(?!\d)"  # landline with area code
)
# What the API accepts as a phone field (pydantic `pattern`).
PHONE_PATTERN: Final = r"^(1[3-9]\d{9}|0\d{2,3}-?\d{7,8}|\+?\d{6,15})$"


def normalise_phone(value: str) -> str | None:
    """A Chinese mobile as 11 digits, or a landline as written; None when it is neither."""
    compact = re.sub(r"\s", "", value)
    mobile = _MOBILE.fullmatch(compact.replace("-", ""))
    if mobile:
        return mobile.group(1)
    if _LANDLINE.fullmatch(compact):
        return compact
    return None


def e164_mobile(raw: str) -> str:
    """`+8613800138000` for any way of writing a mainland mobile, `+<digits>` abroad.

    Raises ValueError (the number masked) for anything an SMS cannot reach.
    """
    compact = re.sub(r"[\s()-]", "", raw)
    if match := _MOBILE.fullmatch(compact):
        return f"+86{match.group(1)}"
    match = _INTERNATIONAL.fullmatch(compact)
    if match and not match.group(1).startswith("86"):  # +86 but not a mobile: no SMS
        return f"+{match.group(1)}"
    msg = f"not a mobile number: {mask_phone(compact)}"
    raise ValueError(msg)


def mask_phone(text: str) -> str:
    """`138****8000` for every phone number in the text: tells numbers apart, not enough to call."""

    def repl(match: re.Match[str]) -> str:
        if match.group(1):
            return f"{match.group(1)}****{match.group(3)}"
        return f"{match.group(4)}****{match.group(5)}"

    return _IN_TEXT.sub(repl, text)
