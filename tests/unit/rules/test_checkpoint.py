"""Restarts: the engine's state through a checkpoint, downtime not counted as silence."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from protocol.models import Kind
from rules.checkpoint import CHECKPOINT_VERSION, Checkpoint, decode_checkpoint, encode_checkpoint
from rules.exceptions import CheckpointError
from rules.findings import Severity
from rules.state import Baseline
from tests.support.rules import HOUR, MIN, SEC, T0, Rig, bev, bin_, brief, btm, ev, only, series, tm


def restarted(rig: Rig, down_ms: int) -> Rig:
    """A new engine (and clock) that restores `rig`'s checkpoint after `down_ms` of downtime."""
    saved = rig.engine.snapshot()
    new = Rig(profiles=rig.profiles.values(), now=rig.clock.now + down_ms)
    new.engine.restore(saved)
    return new


def test_restart_keeps_a_sustained_clock() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 4)  # minutes 0-3: pending
    new = restarted(rig, 30 * SEC)
    found = [f for f in new.feed(tm(T0 + 4 * MIN, hr=125), tm(T0 + 5 * MIN, hr=125))]
    assert [(f.rule, f.ts, f.since) for f in found] == [("hr_high", T0 + 5 * MIN, T0)]


def test_restart_keeps_an_open_finding_and_its_clear() -> None:
    rig = Rig()
    series(rig, "hr", [125] * 6 + [100])
    new = restarted(rig, 30 * SEC)
    assert brief(new.engine.active()) == [("hr_high", True)]
    assert only(series(new, "hr", [100], start=T0 + 8 * MIN), "hr_high") == [(0, False)]


def test_restart_keeps_a_latched_fall() -> None:
    rig = Rig()
    fall = ev(T0, "fall", confidence=0.9)
    rig.feed(fall)
    new = restarted(rig, 10 * MIN)
    active = new.engine.active()
    assert [(f.rule, f.latched, f.severity, f.since) for f in active] == [
        ("fall", True, Severity.CRITICAL, T0)
    ]
    assert new.feed(fall) == []  # the broker redelivers it after the restart
    assert new.engine.resolve("w1", "fall", T0 + HOUR) is True


def test_restart_does_not_count_downtime_as_silence() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    rig.clock.now = T0 + MIN  # saved a minute after the band's last reading
    down = HOUR
    new = restarted(rig, down)
    back = T0 + MIN + down  # 1 min of silence before the save, the rest after the restore
    assert new.tick(back + 2 * MIN) == []
    assert brief(new.tick(back + 2 * MIN + 1)) == [("no_data", True)]


def test_restart_keeps_an_offline_grace_and_the_bins_and_buildings() -> None:
    rig = Rig(profiles=[bin_(), bin_("b2")])
    rig.feed(btm(T0, fill=95), bev(T0 + SEC, "lid_jam"))
    for i in range(60):
        rig.feed(bev(T0 + 2 * SEC + i * SEC, "deposit", device="b2", detected="other"))
    rig.status(False, "b1", Kind.BIN)
    rig.clock.now += MIN
    new = restarted(rig, HOUR)
    assert new.tick(new.clock.now + MIN - 1) == []  # the grace left: 1 min, not 0
    assert brief(new.tick(new.clock.now + MIN)) == [("offline", True)]
    assert sorted(brief(new.engine.active())) == [
        ("bin_full", True),
        ("lid_jam", True),
        ("offline", True),
    ]
    new.feed(bev(T0 + 70 * SEC, "deposit", device="b2", detected="kitchen"))
    assert new.engine.buildings["7"].buckets.sum(axis=0).tolist() == [1, 61]


def test_restore_refuses_another_version() -> None:
    rig = Rig()
    rig.feed(tm(T0, hr=70))
    data = rig.engine.snapshot().replace(b"\xa7version\x01", b"\xa7version\x09")
    with pytest.raises(CheckpointError, match="checkpoint version 9"):
        Rig().engine.restore(data)


def test_a_checkpoint_written_with_dtype_names_still_restores() -> None:
    """Arrays were saved as ("uint32", [shape], bytes) until 2026-12-08; now as ("<u4", ...)."""
    old_enc = msgspec.msgpack.Encoder(enc_hook=lambda a: [str(a.dtype), list(a.shape), a.tobytes()])
    baseline = Baseline.new(14)
    baseline.hist[3] = 7
    baseline.days[1] = (61.0, 97.0)
    checkpoint = Checkpoint(CHECKPOINT_VERSION, 0, {}, {}, {}, {"r1": baseline})
    restored = decode_checkpoint(old_enc.encode(checkpoint)).baselines["r1"]
    assert restored.hist[3] == 7 and restored.hist.dtype == np.uint32
    assert restored.days[1].tolist() == [61.0, 97.0]
    again = decode_checkpoint(encode_checkpoint(checkpoint)).baselines["r1"]
    assert np.array_equal(again.hist, baseline.hist)
    assert np.array_equal(again.days, baseline.days, equal_nan=True)
