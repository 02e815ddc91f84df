"""One device's generator: determinism, valid payloads, unique ts, contiguous seq."""

from __future__ import annotations

import collections
from dataclasses import replace

from protocol.decode import Decoder
from protocol.models import Channel, Reading
from simulators import scenarios
from simulators.device import build_simulators, simulate
from simulators.models import FleetConfig, Message
from tests.unit.simulators.day import DAY, MIDNIGHT_MS, day_config


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
