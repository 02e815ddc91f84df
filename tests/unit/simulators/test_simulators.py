"""Unit tests of the simulators: pure, offline (no broker), fast."""

from __future__ import annotations

import argparse
import collections
import hashlib
import hmac
import itertools
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest

from core.durations import format_duration, parse_duration
from protocol.decode import Decoder
from protocol.models import Category, Channel, Kind, Reading
from simulators import credentials, manifest, scenarios
from simulators.cli import add_arguments, config_from_args
from simulators.device import build_simulators, simulate
from simulators.exceptions import (
    ConfigError,
    DurationError,
    ScenarioError,
)
from simulators.models import FleetConfig, Incident, Message, Scenario
from simulators.signals import local_hour
from simulators.wire import publish_packet

CST = timezone(timedelta(hours=8))
MIDNIGHT_MS = int(datetime(2026, 11, 28, tzinfo=CST).timestamp() * 1000)  # 00:00 China time
DAY = 86_400.0

EVERY_SCENARIO = (
    "fall@w0000+9h",
    "sos@w0001+10h30m",
    "tachycardia@w0002+14h-14h30m",
    "spo2_drop@w0003+15h-15h20m",
    "no_movement@w0004+9h-12h",
    "off_wrist@w0005+13h-14h",
    "silent@w0006+16h-17h",
    "low_battery@w0007+18h-19h",
    "bin_overflow@b0000+12h-13h",
    "sorting_errors@b0001+8h-8h30m",
    "bin_fire@b0002+20h-20h30m",
    "silent@b0003+3h-4h",
)


def day_config(**overrides: object) -> FleetConfig:
    incidents = tuple(scenarios.parse_spec(s) for s in EVERY_SCENARIO)
    config = FleetConfig(wristbands=8, bins=8, interval=60.0, seed=7, incidents=incidents)
    return replace(config, **overrides)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def day() -> list[Message]:
    """A simulated day of a small fleet with every scenario, starting at local midnight."""
    return list(simulate(day_config(), start_ms=MIDNIGHT_MS, duration=DAY))


def body(message: Message) -> dict[str, Any]:
    decoded = msgspec.json.decode(message.payload)
    assert isinstance(decoded, dict)
    return decoded


def of(messages: list[Message], device: str, channel: Channel) -> list[dict[str, Any]]:
    return [body(m) for m in messages if m.device_id == device and m.channel is channel]


def at(offset: str) -> int:
    return MIDNIGHT_MS + round(parse_duration(offset) * 1000)


# durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("10s", 10), ("2m", 120), ("1h", 3600), ("1h30m", 5400), ("7", 7),
     ("1.5m", 90), (" 2M ", 120), ("1d", 86400)],
)  # fmt: skip
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "ten", "10 s", "5x", "-3s", "m", "1h-2m", "nan", "inf"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(DurationError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("seconds", [0.5, 10, 90, 120, 5400, 3600, 45.25])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


# scenario specs


def test_parse_spec_instant_and_window() -> None:
    assert scenarios.parse_spec("fall@w0003+5m") == Incident(Scenario.FALL, "w0003", 300.0)
    tachy = scenarios.parse_spec("tachycardia@w0001+2m-10m")
    assert tachy == Incident(Scenario.TACHYCARDIA, "w0001", 120.0, 600.0)
    assert tachy.spec == "tachycardia@w0001+2m-10m"
    assert scenarios.parse_spec("silent@t1-b0002+30s").device_id == "t1-b0002"
    assert scenarios.parse_spec("SOS@w0000+0s").scenario is Scenario.SOS


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("fall@w0003", "SCENARIO@DEVICE"),
        ("fall+5m", "SCENARIO@DEVICE"),
        ("@w0003+5m", "SCENARIO@DEVICE"),
        ("jump@w0001+1m", "unknown scenario 'jump'"),
        ("fall@w0003+5m-6m", "instantaneous"),
        ("tachycardia@w0001+10m-2m", "must come after the start"),
        ("tachycardia@w0001+soon", "bad start"),
        ("tachycardia@w0001+1m-later", "bad end"),
        ("fall@w 3+1m", "device id"),
    ],
)
def test_parse_spec_rejects_with_a_clear_reason(spec: str, complaint: str) -> None:
    with pytest.raises(ScenarioError, match=complaint) as info:
        scenarios.parse_spec(spec)
    assert spec in str(info.value)


def test_parse_toml_specs_and_tables() -> None:
    text = """
specs = ["fall@w0003+5m"]

[[incident]]
scenario = "tachycardia"
device = "w0001"
start = "2m"
end = "10m"

[[incident]]
scenario = "bin_fire"
device = "b0000"
at = 90
"""
    assert scenarios.parse_toml(text) == [
        Incident(Scenario.FALL, "w0003", 300.0),
        Incident(Scenario.TACHYCARDIA, "w0001", 120.0, 600.0),
        Incident(Scenario.BIN_FIRE, "b0000", 90.0),
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("specs = [", "not valid TOML"),
        ("incidents = []", "unknown keys"),
        ("[[incident]]\nscenario = 'fall'\ndevice = 'w0001'", "needs `scenario`, `device`"),
        ("[[incident]]\nscenario='fall'\ndevice='w1'\nstart='1m'\nwhen=1", "unknown keys"),
        ("[[incident]]\nscenario = 'melt'\ndevice = 'b0001'\nstart = '1m'", "unknown scenario"),
        ("specs = [1]", "list of strings"),
    ],
)
def test_parse_toml_rejects(text: str, complaint: str) -> None:
    with pytest.raises(ScenarioError, match=complaint):
        scenarios.parse_toml(text, "s.toml")


def test_load_file(tmp_path: Path) -> None:
    path = tmp_path / "incidents.toml"
    path.write_text('specs = ["sos@w0002+1m"]\n', encoding="utf-8")
    assert scenarios.load_file(path) == [Incident(Scenario.SOS, "w0002", 60.0)]
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        scenarios.load_file(tmp_path / "missing.toml")


def test_resolve_checks_devices_and_kinds() -> None:
    config = FleetConfig(wristbands=2, bins=1, prefix="t1-")
    devices = manifest.build_fleet(config)
    resolved = scenarios.resolve(
        [scenarios.parse_spec("fall@w0001+5m"), scenarios.parse_spec("bin_fire@t1-b0000+1m")],
        devices,
    )
    assert [i.device_id for i in resolved] == ["t1-b0000", "t1-w0001"]  # sorted by start
    with pytest.raises(ScenarioError, match="no device 'w0009'"):
        scenarios.resolve([scenarios.parse_spec("fall@w0009+5m")], devices)
    with pytest.raises(ScenarioError, match="applies to a wristband, not to bin"):
        scenarios.resolve([scenarios.parse_spec("fall@b0000+5m")], devices)
    with pytest.raises(ScenarioError, match="applies to a bin"):
        scenarios.resolve([scenarios.parse_spec("bin_overflow@w0000+5m")], devices)


# determinism and validity


def test_same_seed_same_payloads_other_seed_other_payloads() -> None:
    config = day_config()
    first = [m.payload for m in simulate(config, start_ms=MIDNIGHT_MS, duration=3 * 3600)]
    again = [m.payload for m in simulate(config, start_ms=MIDNIGHT_MS, duration=3 * 3600)]
    other = [
        m.payload
        for m in simulate(replace(config, seed=8), start_ms=MIDNIGHT_MS, duration=3 * 3600)
    ]
    assert first == again
    assert first != other


def test_prefix_changes_ids_not_readings() -> None:
    config = FleetConfig(wristbands=2, bins=2, interval=30.0)
    plain = list(simulate(config, start_ms=MIDNIGHT_MS, duration=600))
    prefixed = list(simulate(replace(config, prefix="t1-"), start_ms=MIDNIGHT_MS, duration=600))
    assert [m.payload for m in plain] == [m.payload for m in prefixed]
    assert {m.device_id for m in prefixed} == {"t1-w0000", "t1-w0001", "t1-b0000", "t1-b0001"}
    assert prefixed[0].topic.startswith("cw/v1/")


def test_every_payload_of_a_day_decodes_with_unique_ts_and_contiguous_seq(
    day: list[Message],
) -> None:
    decoder = Decoder()
    seen_ts: dict[str, set[int]] = collections.defaultdict(set)
    seqs: dict[str, list[int]] = collections.defaultdict(list)
    for message in day:
        decoded = decoder.decode(message.topic, message.payload, message.ts)
        assert isinstance(decoded, Reading), (message, decoded)
        assert decoded.device_id == message.device_id
        assert decoded.body.ts == message.ts and decoded.body.seq == message.seq
        assert message.ts not in seen_ts[message.device_id]
        seen_ts[message.device_id].add(message.ts)
        seqs[message.device_id].append(message.seq)
    assert len(seqs) == 16
    for device, numbers in seqs.items():
        assert numbers == list(range(len(numbers))), device
    assert all(MIDNIGHT_MS <= m.ts <= MIDNIGHT_MS + DAY * 1000 + 1000 for m in day)
    assert {m.channel for m in day} == {Channel.TELEMETRY, Channel.EVENT}


def test_ts_bumped_when_several_messages_share_a_millisecond() -> None:
    config = FleetConfig(wristbands=1, bins=0, interval=60.0)
    incidents = (scenarios.parse_spec("fall@w0000+0s"), scenarios.parse_spec("sos@w0000+0s"))
    [sim], _ = build_simulators(replace(config, incidents=incidents), MIDNIGHT_MS)
    out = sim.advance(120.0, MIDNIGHT_MS)  # everything of two minutes, all stamped "now"
    assert [m.ts for m in out] == [MIDNIGHT_MS + i for i in range(len(out))]
    assert [m.seq for m in out] == list(range(len(out)))


# realism


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


# scripted incidents


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


# manifest and credentials


def test_manifest_round_trip_and_determinism(tmp_path: Path) -> None:
    config = FleetConfig(wristbands=40, bins=12, seed=3, prefix="t9-")
    devices = manifest.build_fleet(config)
    assert devices == manifest.build_fleet(config)
    assert devices != manifest.build_fleet(replace(config, seed=4))
    path = tmp_path / "fleet.csv"
    assert manifest.write_manifest(path, devices) == 52
    assert (
        path.read_text(encoding="utf-8").splitlines()[0] == "device_id,kind,grid,building,category"
    )
    entries = manifest.read_manifest(path)
    assert entries == [d.entry for d in devices]
    wristbands = [e for e in entries if e.kind is Kind.WRISTBAND]
    bins = [e for e in entries if e.kind is Kind.BIN]
    assert wristbands[0].device_id == "t9-w0000" and bins[-1].device_id == "t9-b0011"
    assert all(e.category is None and e.grid.startswith("网格") for e in wristbands)
    assert all(e.building.endswith("栋") for e in entries)
    assert [e.category for e in bins[:4]] == list(manifest.CATEGORIES)
    assert len({e.building for e in bins[:4]}) == 1  # a sorting station has all four
    big = manifest.build_fleet(FleetConfig(wristbands=400, bins=0, seed=1))
    buildings = {d.entry.building for d in big}
    assert any(" " in b for b in buildings) and any("," in b for b in buildings)


@pytest.mark.parametrize(
    "text",
    [
        "id,kind\n",
        "device_id,kind,grid,building,category\nw1,toaster,g,b,\n",
        "device_id,kind,grid,building,category\nw 1,bin,g,b,kitchen\n",
        "device_id,kind,grid,building,category\nb1,bin,g,b,compost\n",
        "device_id,kind,grid,building,category\nb1,bin,g\n",
    ],
)
def test_read_manifest_rejects(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError):
        manifest.read_manifest(path)


def test_bad_prefix_is_refused() -> None:
    with pytest.raises(ConfigError, match="prefix"):
        manifest.build_fleet(FleetConfig(prefix="run/1-"))
    with pytest.raises(ConfigError, match="prefix"):
        manifest.build_fleet(FleetConfig(prefix="x" * 60))


def test_derive_password() -> None:
    expected = hmac.new(b"s3cret", b"w0001", hashlib.sha256).hexdigest()[:32]
    assert credentials.derive_password("s3cret", "w0001") == expected
    assert len(expected) == 32
    assert credentials.derive_password("s3cret", "w0002") != expected


# CLI and wire format


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAREWATCH_DEVICE_SECRET", raising=False)
    config = config_from_args(parse())
    assert (config.wristbands, config.bins, config.interval, config.seed) == (50, 10, 10.0, 1)
    assert config.duration is None and config.secret == "carewatch-dev-secret"
    assert config.sorting_error_rate == 0.1 and not config.shared_account
    monkeypatch.setenv("CAREWATCH_DEVICE_SECRET", "from-env")
    assert config_from_args(parse()).secret == "from-env"


def test_cli_options(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text('specs = ["sos@w0002+1m"]\n', encoding="utf-8")
    args = parse(
        "--wristbands", "3", "--bins", "0", "--interval", "500ms", "--duration", "2m",
        "--scenario", "fall@w0001+5m", "--scenario", "tachycardia@w0000+1m-2m",
        "--scenario-file", str(scenario_file), "--prefix", "t1-", "--secret", "k",
        "--shared-account", "--sorting-error-rate", "0.25", "--seed", "9",
    )  # fmt: skip
    config = config_from_args(args)
    assert config.interval == 0.5 and config.duration == 120 and config.prefix == "t1-"
    assert [i.spec for i in config.incidents] == [
        "fall@w0001+5m",
        "tachycardia@w0000+1m-2m",
        "sos@w0002+1m",
    ]
    assert config.shared_account and config.secret == "k" and config.seed == 9


@pytest.mark.parametrize(
    "argv",
    [
        ["--interval", "fast"],
        ["--interval", "0s"],
        ["--scenario", "fall@w0001"],
        ["--scenario", "jump@w0001+1m"],
        ["--sorting-error-rate", "1.5"],
        ["--wristbands", "-1"],
    ],
)
def test_cli_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "error" in capsys.readouterr().err


def test_publish_packet_encoding() -> None:
    packet = publish_packet(b"a/b", 258, b"{}")
    assert packet == b"\x32\x09\x00\x03a/b\x01\x02{}"
    assert publish_packet(b"a/b", 1, b"{}", dup=True)[0] == 0x3A
