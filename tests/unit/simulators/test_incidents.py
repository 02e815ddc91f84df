"""Scripted incidents over a simulated day: each shapes its device, only inside its window."""

from __future__ import annotations

from protocol.models import Category, Channel
from simulators.models import Message
from tests.unit.simulators.day import at, of


def test_fall_and_sos_emitted_at_their_offsets(day: list[Message]) -> None:
    [fall] = of(day, "w0000", Channel.EVENT)
    assert fall["type"] == "fall" and fall["ts"] == at("9h")
    assert 0.8 <= fall["confidence"] <= 1
    assert "lat" in fall and "lon" in fall
    [sos] = of(day, "w0001", Channel.EVENT)
    assert sos["type"] == "sos" and sos["ts"] == at("10h30m")


def test_tachycardia_and_spo2_drop_only_inside_their_windows(day: list[Message]) -> None:
    for device, field, window, inside in (
        ("w0002", "hr", ("14h", "14h30m"), range(130, 161)),
        ("w0003", "spo2", ("15h", "15h20m"), range(82, 89)),
    ):
        start, end = at(window[0]), at(window[1])
        readings = of(day, device, Channel.TELEMETRY)
        within = [r[field] for r in readings if start <= r["ts"] < end]
        outside = [r[field] for r in readings if not start <= r["ts"] < end]
        assert len(within) >= 19
        assert all(v in inside for v in within)
        assert not any(v in inside for v in outside)


def test_no_movement_freezes_steps(day: list[Message]) -> None:
    steps = [
        r["steps"] for r in of(day, "w0004", Channel.TELEMETRY) if at("9h") <= r["ts"] < at("12h")
    ]
    assert len(steps) >= 170 and len(set(steps)) == 1


def test_off_wrist_events_and_telemetry_without_vitals(day: list[Message]) -> None:
    events = of(day, "w0005", Channel.EVENT)
    assert [(e["type"], e["ts"]) for e in events] == [
        ("off_wrist", at("13h")),
        ("on_wrist", at("14h")),
    ]
    readings = of(day, "w0005", Channel.TELEMETRY)
    off = [r for r in readings if at("13h") <= r["ts"] < at("14h")]
    assert off and all(r["worn"] is False and "hr" not in r and "steps" not in r for r in off)
    assert all(r["worn"] is True and "hr" in r for r in readings if r not in off)


def test_silent_devices_publish_nothing_in_their_window(day: list[Message]) -> None:
    for device, window in (("w0006", ("16h", "17h")), ("b0003", ("3h", "4h"))):
        stamps = [m.ts for m in day if m.device_id == device]
        assert not [ts for ts in stamps if at(window[0]) <= ts < at(window[1])]
        assert any(ts >= at(window[1]) for ts in stamps)  # and come back afterwards


def test_low_battery_window(day: list[Message]) -> None:
    readings = of(day, "w0007", Channel.TELEMETRY)
    low = [r["battery"] for r in readings if at("18h") <= r["ts"] < at("19h")]
    assert low and max(low) <= 18 and low == sorted(low, reverse=True)
    after = [r["battery"] for r in readings if r["ts"] >= at("19h")]
    assert after and min(after) > 95


def test_bin_overflow_climbs_to_full_then_collected(day: list[Message]) -> None:
    readings = of(day, "b0000", Channel.TELEMETRY)
    window = [r["fill"] for r in readings if at("12h") <= r["ts"] < at("13h")]
    assert window == sorted(window) and window[-1] == 100
    assert sum(1 for f in window if f == 100) >= 20
    after = [r["fill"] for r in readings if r["ts"] >= at("13h")]
    assert after[0] < 20


def test_bin_fire_hot_and_climbing(day: list[Message]) -> None:
    readings = of(day, "b0002", Channel.TELEMETRY)
    temps = [r["temp"] for r in readings if at("20h") <= r["ts"] < at("20h30m")]
    assert len(temps) >= 29 and all(t > 60 for t in temps)
    assert temps == sorted(temps) and temps[-1] > temps[0] + 30
    others = [r["temp"] for r in readings if not at("20h") <= r["ts"] < at("20h30m")]
    assert max(others) < 30


def test_sorting_errors_burst_is_all_wrong(day: list[Message]) -> None:
    deposits = [d for d in of(day, "b0001", Channel.EVENT) if at("8h") <= d["ts"] < at("8h30m")]
    assert len(deposits) >= 30  # one per interval plus the ordinary ones
    wrong = [d for d in deposits if d["detected"] != Category.RECYCLABLE.value]
    assert len(wrong) >= 30
