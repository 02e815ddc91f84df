"""Scripted incidents: parsing `--scenario` specs and TOML files, and checking them against a fleet.

A spec is `SCENARIO@DEVICE+START[-END]`, times being offsets from the simulation
start: `fall@w0003+5m` (instantaneous), `tachycardia@w0001+2m-10m` (a window),
`silent@b0002+1m` (a window open until the run stops).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from core.durations import DurationError, parse_duration
from protocol.models import Kind
from protocol.topics import DEVICE_ID_RE
from simulators.exceptions import ScenarioError
from simulators.models import DeviceSpec, Incident, Scenario


@dataclass(frozen=True, slots=True)
class ScenarioRule:
    """Which devices a scenario applies to, and whether it is an instant or a window."""

    kinds: frozenset[Kind]
    instant: bool
    summary: str


_W: Final = frozenset({Kind.WRISTBAND})
_B: Final = frozenset({Kind.BIN})
_ANY: Final = frozenset(Kind)

SCENARIOS: Final[Mapping[Scenario, ScenarioRule]] = {
    Scenario.FALL: ScenarioRule(_W, True, "a fall event"),
    Scenario.SOS: ScenarioRule(_W, True, "an SOS button event"),
    Scenario.TACHYCARDIA: ScenarioRule(_W, False, "hr 130-160 bpm"),
    Scenario.SPO2_DROP: ScenarioRule(_W, False, "spo2 82-88 %"),
    Scenario.NO_MOVEMENT: ScenarioRule(_W, False, "steps stop increasing"),
    Scenario.OFF_WRIST: ScenarioRule(
        _W, False, "off_wrist event, then worn=false without vitals, on_wrist at the end"
    ),
    Scenario.LOW_BATTERY: ScenarioRule(_ANY, False, "battery falls to 18 % and drains fast"),
    Scenario.SILENT: ScenarioRule(
        _ANY, False, "publishes nothing; a per-device client drops its connection so its will fires"
    ),
    Scenario.BIN_OVERFLOW: ScenarioRule(_B, False, "fill climbs to 100 %, no collection"),
    Scenario.SORTING_ERRORS: ScenarioRule(_B, False, "a burst of deposits of the wrong category"),
    Scenario.BIN_FIRE: ScenarioRule(_B, False, "temp above 60 °C and climbing"),
}


def _known() -> str:
    return ", ".join(s.value for s in Scenario)


def _scenario(name: str, where: str) -> Scenario:
    try:
        return Scenario(name.strip().lower())
    except ValueError:
        msg = f"{where}: unknown scenario {name!r}; known: {_known()}"
        raise ScenarioError(msg) from None


def _offset(text: str, where: str, what: str) -> float:
    try:
        return parse_duration(text)
    except DurationError as exc:
        msg = f"{where}: bad {what}: {exc}"
        raise ScenarioError(msg) from exc


def make_incident(
    scenario: Scenario, device: str, start: float, end: float | None, where: str
) -> Incident:
    """Build an incident after checking the rules every source of incidents shares."""
    if DEVICE_ID_RE.fullmatch(device) is None:
        msg = f"{where}: device id {device!r} must be 1-64 of A-Z a-z 0-9 _ -"
        raise ScenarioError(msg)
    rule = SCENARIOS[scenario]
    if rule.instant and end is not None:
        msg = f"{where}: {scenario.value} is instantaneous, give only a start such as +5m"
        raise ScenarioError(msg)
    if end is not None and end <= start:
        msg = f"{where}: the end ({end:g}s) must come after the start ({start:g}s)"
        raise ScenarioError(msg)
    return Incident(scenario, device, start, end)


def parse_spec(spec: str) -> Incident:
    """Parse `SCENARIO@DEVICE+START[-END]`, e.g. `tachycardia@w0001+2m-10m`."""
    where = f"scenario {spec!r}"
    name, at, rest = spec.strip().partition("@")
    device, plus, times = rest.partition("+")
    if not at or not plus or not name or not device or not times:
        msg = (
            f"{where}: expected SCENARIO@DEVICE+START[-END], "
            "e.g. fall@w0003+5m or tachycardia@w0001+2m-10m"
        )
        raise ScenarioError(msg)
    scenario = _scenario(name, where)
    start_text, dash, end_text = times.partition("-")
    start = _offset(start_text, where, "start")
    end = _offset(end_text, where, "end") if dash else None
    return make_incident(scenario, device.strip(), start, end, where)


def _field(table: Mapping[str, object], key: str, where: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        msg = f'{where}: `{key}` must be a string such as "5m" or a number of seconds'
        raise ScenarioError(msg)
    return str(value)


def parse_toml(text: str, source: str = "<toml>") -> list[Incident]:
    """Incidents from TOML: `specs = ["fall@w0003+5m"]` and/or `[[incident]]` tables.

    A table has `scenario`, `device`, `start` (or `at`) and optional `end`.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{source}: not valid TOML: {exc}"
        raise ScenarioError(msg) from exc
    unknown = set(data) - {"specs", "incident"}
    if unknown:
        msg = f"{source}: unknown keys {sorted(unknown)}; expected `specs` and `[[incident]]`"
        raise ScenarioError(msg)
    incidents: list[Incident] = []
    specs = data.get("specs", [])
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        msg = f'{source}: `specs` must be a list of strings such as "fall@w0003+5m"'
        raise ScenarioError(msg)
    incidents.extend(parse_spec(s) for s in specs)
    tables = data.get("incident", [])
    if not isinstance(tables, list):
        msg = f"{source}: write incidents as [[incident]] tables"
        raise ScenarioError(msg)
    for number, table in enumerate(tables, start=1):
        where = f"{source}: incident #{number}"
        if not isinstance(table, dict):
            msg = f"{where}: must be a table"
            raise ScenarioError(msg)
        extra = set(table) - {"scenario", "device", "start", "at", "end"}
        if extra:
            msg = f"{where}: unknown keys {sorted(extra)}; use scenario, device, start, end"
            raise ScenarioError(msg)
        name = _field(table, "scenario", where)
        device = _field(table, "device", where)
        start_text = _field(table, "start", where) or _field(table, "at", where)
        if name is None or device is None or start_text is None:
            msg = f"{where}: needs `scenario`, `device` and `start`"
            raise ScenarioError(msg)
        end_text = _field(table, "end", where)
        scenario = _scenario(name, where)
        start = _offset(start_text, where, "start")
        end = None if end_text is None else _offset(end_text, where, "end")
        incidents.append(make_incident(scenario, device, start, end, where))
    return incidents


def load_file(path: Path | str) -> list[Incident]:
    """Incidents from a TOML scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read scenario file {path}: {exc.strerror or exc}"
        raise ScenarioError(msg) from exc
    return parse_toml(text, str(path))


def resolve(incidents: Iterable[Incident], devices: Sequence[DeviceSpec]) -> tuple[Incident, ...]:
    """Point each incident at a fleet device (spec ids may omit the run prefix); check kinds."""
    by_id = {d.device_id: d for d in devices}
    by_name = {d.name: d for d in devices}
    resolved: list[Incident] = []
    for incident in incidents:
        device = by_id.get(incident.device_id) or by_name.get(incident.device_id)
        if device is None:
            wristbands = sum(1 for d in devices if d.kind is Kind.WRISTBAND)
            msg = (
                f"scenario {incident.spec!r}: no device {incident.device_id!r} in this fleet "
                f"({wristbands} wristbands w0000.., {len(devices) - wristbands} bins b0000..)"
            )
            raise ScenarioError(msg)
        rule = SCENARIOS[incident.scenario]
        if device.kind not in rule.kinds:
            kinds = " or ".join(sorted(k.value for k in rule.kinds))
            msg = (
                f"scenario {incident.spec!r}: {incident.scenario.value} applies to a {kinds}, "
                f"not to {device.kind.value} {device.device_id}"
            )
            raise ScenarioError(msg)
        resolved.append(replace(incident, device_id=device.device_id))
    return tuple(sorted(resolved, key=lambda i: (i.start, i.device_id, i.scenario.value)))
