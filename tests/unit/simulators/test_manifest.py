"""The fleet manifest: deterministic names, the CSV round trip, what is refused."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from protocol.models import Kind
from simulators import manifest
from simulators.exceptions import ConfigError
from simulators.models import FleetConfig


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
