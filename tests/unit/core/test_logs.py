"""Personal data stays out of the logs: phone numbers masked, names shortened."""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.logs import JsonFormatter, PersonalDataFilter, mask_name
from core.phones import mask_phone


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("call 13800138000 now", "call 138****8000 now"),
        ("+86 13912345678", "139****5678"),
        ("duty 0571-88001234", "duty 0571-****1234"),
        ("order 123456789012345 stays", "order 123456789012345 stays"),
        ("ts 1795932620403", "ts 1795932620403"),
    ],
)
def test_mask_phone(text: str, masked: str) -> None:
    assert mask_phone(text) == masked


def test_mask_name() -> None:
    assert mask_name("张建国") == "张**"
    assert mask_name("王") == "王*"


def test_filter_masks_any_logger_output() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(PersonalDataFilter())
    logger = logging.getLogger("test.personal")
    logger.addHandler(handler)
    logger.propagate = False
    logger.warning("could not reach %s at %s", "张小明", "13800138000")
    entry = json.loads(stream.getvalue())
    assert "13800138000" not in entry["msg"] and "138****8000" in entry["msg"]
