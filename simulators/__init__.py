"""Simulated wristbands and smart bins: realistic signals, scripted incidents, fleets, load.

`simulate`, the scenarios and the manifest need no broker; `run_fleet`, `run_load` do: README.md.
"""

from core.durations import DurationError, parse_duration
from simulators.credentials import derive_password
from simulators.device import DeviceSimulator, build_simulators, iter_payloads, simulate
from simulators.exceptions import (
    BrokerRefused,
    ConfigError,
    LinkDown,
    ScenarioError,
    SimulatorError,
)
from simulators.fleet import run_fleet
from simulators.load import run_load
from simulators.manifest import build_fleet, read_manifest, write_manifest
from simulators.models import (
    DeviceCounts,
    DeviceSpec,
    FleetConfig,
    FleetProgress,
    FleetReport,
    Incident,
    LoadReport,
    ManifestEntry,
    Message,
    Scenario,
)
from simulators.scenarios import load_file, parse_spec, parse_toml

__all__ = [
    "BrokerRefused",
    "ConfigError",
    "DeviceCounts",
    "DeviceSimulator",
    "DeviceSpec",
    "DurationError",
    "FleetConfig",
    "FleetProgress",
    "FleetReport",
    "Incident",
    "LinkDown",
    "LoadReport",
    "ManifestEntry",
    "Message",
    "Scenario",
    "ScenarioError",
    "SimulatorError",
    "build_fleet",
    "build_simulators",
    "derive_password",
    "iter_payloads",
    "load_file",
    "parse_duration",
    "parse_spec",
    "parse_toml",
    "read_manifest",
    "run_fleet",
    "run_load",
    "simulate",
    "write_manifest",
]
