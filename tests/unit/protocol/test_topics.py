"""Topics of protocol v1 and which worker owns a device's."""

from __future__ import annotations

from collections import Counter

from protocol.models import Channel, Kind
from protocol.topics import device_topic, partition_of


def test_a_device_has_one_partition_and_a_fleet_spreads_over_them() -> None:
    topics = [device_topic("wristband", f"w{i:05d}", "telemetry") for i in range(10_000)]
    shares = Counter(partition_of(t, 4) for t in topics)
    assert set(shares) == {0, 1, 2, 3}
    assert min(shares.values()) > 2_300  # about a quarter each
    # Every channel of a device goes to the same worker; a topic naming none, to the first.
    for device in ("w00001", "b-17"):
        owners = {partition_of(device_topic(k, device, c), 4) for k in Kind for c in Channel}
        assert len(owners) == 1
    assert partition_of("cw/v1/deadletter", 4) == 0
