"""Normal signals over a simulated day: daily rhythm, steps, bins filling and emptied."""

from __future__ import annotations

import itertools

from protocol.models import Channel
from simulators import manifest
from simulators.device import simulate
from simulators.models import FleetConfig, Message
from simulators.signals import local_hour
from tests.unit.simulators.day import DAY, MIDNIGHT_MS, body, of


def test_daily_rhythm_heart_rate_lower_at_night_steps_only_by_day(day: list[Message]) -> None:
    night_hr: list[float] = []
    afternoon_hr: list[float] = []
    for device in ("w0000", "w0001", "w0007"):
        previous: int | None = None
        for reading in of(day, device, Channel.TELEMETRY):
            ts = reading["ts"]
            assert isinstance(ts, int)
            hour = local_hour(ts)
            hr = reading["hr"]
            assert isinstance(hr, int)
            assert 40 <= hr <= 120
            assert 95 <= reading["spo2"] <= 99
            assert reading["worn"] is True
            if 2 <= hour < 5:
                night_hr.append(hr)
            if 14 <= hour < 17:
                afternoon_hr.append(hr)
            steps = reading["steps"]
            assert isinstance(steps, int)
            if previous is not None and not 7 <= hour < 21.05:
                assert steps == previous, (device, hour)  # no walking at night
            previous = steps
        assert previous is not None and previous > 1000  # walked during the day
    assert sum(night_hr) / len(night_hr) + 5 < sum(afternoon_hr) / len(afternoon_hr)


def test_bins_fill_and_are_emptied(day: list[Message]) -> None:
    fills = [r["fill"] for r in of(day, "b0004", Channel.TELEMETRY)]
    assert all(0 <= f <= 100 for f in fills)
    drops = [a - b for a, b in itertools.pairwise(fills) if b < a]
    assert len(drops) == 2  # the morning and evening collections
    assert max(fills) < 90
    deposits = of(day, "b0004", Channel.EVENT)
    assert len(deposits) > 20
    assert all(d["type"] == "deposit" and d["weight_g"] for d in deposits)


def test_sorting_error_rate_is_roughly_as_configured() -> None:
    config = FleetConfig(wristbands=0, bins=16, interval=600.0, sorting_error_rate=0.3)
    entries = {d.device_id: d.entry for d in manifest.build_fleet(config)}
    wrong = total = 0
    for message in simulate(config, start_ms=MIDNIGHT_MS, duration=DAY):
        if message.channel is Channel.EVENT:
            total += 1
            wrong += body(message)["detected"] != entries[message.device_id].category
    assert total > 300
    assert 0.22 < wrong / total < 0.38
