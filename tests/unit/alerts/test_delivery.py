"""A failed delivery says whether trying again could help, before anything reaches a network."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from alerts.channels import Channels, Delivery
from alerts.dispatcher import Dispatcher
from alerts.lifecycle import AlertBook
from core.db import Database
from core.settings import AlertsTuning


def dispatcher(channels: Channels | None = None, **tuning: Any) -> Dispatcher:
    settings = AlertsTuning(**tuning)
    return Dispatcher(
        Database("sqlite+aiosqlite:///:memory:"),  # never connected to here
        AlertBook(settings, "test-secret"),
        channels or Channels(),
        settings,
    )


def test_a_delivery_is_recoverable_unless_said_otherwise() -> None:
    assert Delivery(False, "timed out").recoverable is True
    assert Delivery(False, "bad URL", recoverable=False).recoverable is False
    assert Delivery(True, "sent") == Delivery(True, "sent", recoverable=True)


@pytest.mark.parametrize(
    ("channel", "target", "tuning", "words"),
    [
        ("sms", "13800138000", {}, "no SMS provider"),
        ("wechat", "zhangxm", {}, "no WeChat sender"),
        ("fax", "0101234567", {}, "unknown channel"),
        # the operator's template wants a value this person has not got
        ("sms", "13800138000", {"sms_url": "json://127.0.0.1:9/{wechat}"}, "cannot build"),
    ],
)
def test_a_channel_that_cannot_be_addressed_fails_for_good(
    channel: str, target: str, tuning: dict[str, str], words: str
) -> None:
    delivery = asyncio.run(dispatcher(**tuning)._deliver(channel, target, "t", "b"))
    assert not delivery.ok
    assert delivery.recoverable is False
    assert words in delivery.detail


def test_a_url_apprise_refuses_fails_for_good() -> None:
    delivery = asyncio.run(Channels().send("nosuch://x", "t", "b"))
    assert delivery == Delivery(
        False, "apprise does not accept this URL: nosuch (unknown scheme)", recoverable=False
    )


class Raising(Channels):
    async def send(self, url: str, title: str, body: str) -> Delivery:
        msg = "the provider's library broke"
        raise RuntimeError(msg)


def test_a_channel_that_raises_may_work_next_time() -> None:
    tuning = {"sms_url": "json://127.0.0.1:9/{phone}"}
    delivery = asyncio.run(dispatcher(Raising(), **tuning)._deliver("sms", "138", "t", "b"))
    assert not delivery.ok
    assert delivery.recoverable is True
    assert "RuntimeError" in delivery.detail
