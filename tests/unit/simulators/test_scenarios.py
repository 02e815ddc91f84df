"""Scenario specs and TOML files: parsing, the reasons for refusing, resolving to a fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulators import manifest, scenarios
from simulators.exceptions import ScenarioError
from simulators.models import FleetConfig, Incident, Scenario


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
