"""The rules file: validated at start with errors that name the key, compiled for the hot path.

Defaults, operator files, grid overrides and personal limits: docs/rules.md, "Rules are data".
"""

from __future__ import annotations

import copy
import tomllib
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.durations import parse_duration
from rules.exceptions import RulesFileError
from rules.findings import Severity

DEFAULT_FILE: Final = Path(__file__).with_name("default.toml")
VITAL_FIELDS: Final = ("hr", "spo2", "sbp", "dbp", "temp")


def _seconds(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    msg = "a duration such as '90s', '5m' or '4h'"
    raise ValueError(msg)


def _minute_of_day(text: str) -> int:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit():
        msg = f"{text!r} is not a time of day HH:MM"
        raise ValueError(msg)
    value = int(hours) * 60 + int(minutes)
    if int(minutes) >= 60 or value > 24 * 60:
        msg = f"{text!r} is not a time of day HH:MM"
        raise ValueError(msg)
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ThresholdSpec(_Section):
    field: Literal["hr", "spo2", "sbp", "dbp", "temp"]
    above: float | None = None
    at_least: float | None = None
    below: float | None = None
    at_most: float | None = None
    clear_at: float
    hold: Seconds = Field(0.0, alias="for")
    clear_for: Seconds = 0.0
    at_rest: bool = False
    severity: Severity = Severity.WARNING
    enabled: bool = True

    @model_validator(mode="after")
    def _one_comparison(self) -> Self:
        given = [
            n for n in ("above", "at_least", "below", "at_most") if getattr(self, n) is not None
        ]
        if len(given) != 1:
            msg = f"give exactly one of above, at_least, below, at_most (got {given or 'none'})"
            raise ValueError(msg)
        limit = getattr(self, given[0])
        high = given[0] in ("above", "at_least")
        if (high and self.clear_at > limit) or (not high and self.clear_at < limit):
            side = "at or below" if high else "at or above"
            msg = f"clear_at {self.clear_at} must lie {side} the limit {limit} (hysteresis)"
            raise ValueError(msg)
        return self


class News2Spec(_Section):
    enabled: bool = True
    medium_total: int = Field(5, ge=1, le=12)
    high_total: int = Field(7, ge=1, le=12)
    clear_total: int = Field(3, ge=0, le=12)
    hold: Seconds = Field(120.0, alias="for")
    clear_for: Seconds = 600.0
    stale_after: Seconds = 900.0

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.clear_total < self.medium_total <= self.high_total:
            msg = "need clear_total < medium_total <= high_total"
            raise ValueError(msg)
        return self


class BaselineSpec(_Section):
    enabled: bool = True
    days: int = Field(14, ge=2, le=60)
    min_days: int = Field(5, ge=1, le=60)
    min_samples: int = Field(60, ge=1)
    k: float = Field(3.0, gt=0)
    hr_min_delta: float = Field(12.0, ge=0)
    spo2_min_delta: float = Field(3.0, ge=0)
    rest_steps_per_min: float = Field(10.0, ge=0)
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _enough_days(self) -> Self:
        if self.min_days > self.days:
            msg = f"min_days ({self.min_days}) cannot exceed days ({self.days})"
            raise ValueError(msg)
        return self


class EventsSpec(_Section):
    fall_min_confidence: float = Field(0.5, ge=0, le=1)


class InactivitySpec(_Section):
    no_steps_for: Seconds = 4 * 3600.0
    severity: Severity = Severity.WARNING


class DeviceLimits(_Section):
    """A device's own limits: silence, offline grace, not worn, battery."""

    offline_intervals: float = Field(3, gt=0)
    default_interval: Seconds = 60.0
    offline_grace: Seconds = 120.0
    not_worn_for: Seconds = 1800.0
    battery_low: float = Field(15, ge=0, le=100)
    battery_clear: float = Field(20, ge=0, le=100)
    battery_flat: float = Field(5, ge=0, le=100)

    @model_validator(mode="after")
    def _battery(self) -> Self:
        if not self.battery_flat <= self.battery_low <= self.battery_clear:
            msg = "need battery_flat <= battery_low <= battery_clear"
            raise ValueError(msg)
        return self


class WanderingSpec(_Section):
    enabled: bool = True
    radius_m: float = Field(500, gt=0)
    clear_radius_m: float = Field(400, gt=0)
    hold: Seconds = Field(1800.0, alias="for")
    severity: Severity = Severity.WARNING

    @model_validator(mode="after")
    def _inside(self) -> Self:
        if self.clear_radius_m > self.radius_m:
            msg = "clear_radius_m must not exceed radius_m (hysteresis)"
            raise ValueError(msg)
        return self


class BinsSpec(_Section):
    full: float = Field(90, ge=0, le=100)
    full_clear: float = Field(30, ge=0, le=100)
    predict_hours: float = Field(4.0, ge=0)
    predict_clear_hours: float = Field(24.0, ge=0)
    predict_window: Seconds = Field(86400.0, gt=0)
    predict_min_span: Seconds = 7200.0
    predict_min_rise: float = Field(5.0, ge=0, le=100)
    fire: float = 60.0
    fire_clear: float = 50.0
    sorting_target: float = Field(0.85, ge=0, le=1)
    sorting_clear_margin: float = Field(0.03, ge=0, le=1)
    sorting_window: Seconds = 86400.0
    sorting_min_deposits: int = Field(50, ge=1)

    @model_validator(mode="after")
    def _hysteresis(self) -> Self:
        if self.full_clear > self.full or self.fire_clear > self.fire:
            msg = "full_clear and fire_clear must not exceed full and fire (hysteresis)"
            raise ValueError(msg)
        if self.predict_clear_hours < self.predict_hours:
            msg = "predict_clear_hours must not be below predict_hours (hysteresis)"
            raise ValueError(msg)
        return self


class SiteRules(_Section):
    """Everything a grid may override."""

    waking_hours: str = "07:00-21:00"
    threshold: dict[str, ThresholdSpec] = {}
    news2: News2Spec = News2Spec()
    baseline: BaselineSpec = BaselineSpec()
    events: EventsSpec = EventsSpec()
    inactivity: InactivitySpec = InactivitySpec()
    device: DeviceLimits = DeviceLimits()
    wandering: WanderingSpec = WanderingSpec()
    bins: BinsSpec = BinsSpec()

    @field_validator("waking_hours")
    @classmethod
    def _window(cls, value: str) -> str:
        start, sep, end = value.partition("-")
        if not sep or _minute_of_day(start) >= _minute_of_day(end):
            msg = f"waking_hours {value!r} must be 'HH:MM-HH:MM' with start before end"
            raise ValueError(msg)
        return value

    @field_validator("threshold")
    @classmethod
    def _names(cls, value: dict[str, ThresholdSpec]) -> dict[str, ThresholdSpec]:
        for name in value:
            if not name.replace("_", "").isalnum() or not name.isascii():
                msg = f"threshold name {name!r}: use letters, digits and _"
                raise ValueError(msg)
        return value


class RulesFile(SiteRules):
    timezone: str = "Asia/Shanghai"
    lateness: Seconds = 120.0

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            msg = f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai"
            raise ValueError(msg) from None
        return value


# -- compiled ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Threshold:
    """One threshold rule, ready for the hot path."""

    name: str
    field: str
    high: bool  # a "too high" rule (above / at_least)
    inclusive: bool  # at_least / at_most
    limit: float
    clear_at: float
    hold_ms: int
    clear_ms: int
    at_rest: bool
    severity: Severity

    def triggers(self, value: float) -> bool:
        if self.high:
            return value >= self.limit if self.inclusive else value > self.limit
        return value <= self.limit if self.inclusive else value < self.limit

    def clears(self, value: float) -> bool:
        return value <= self.clear_at if self.high else value >= self.clear_at

    def moved_to(self, limit: float) -> Threshold:
        """The same rule at a personal limit; the clear level moves with it."""
        return replace(self, limit=limit, clear_at=self.clear_at + (limit - self.limit))


@dataclass(frozen=True, slots=True)
class Limits:
    """The rules as they apply to one device (a grid's overrides, a person's limits applied)."""

    thresholds: tuple[Threshold, ...]
    waking_start_min: int
    waking_end_min: int
    news2: News2Spec
    baseline: BaselineSpec
    events: EventsSpec
    inactivity: InactivitySpec
    device: DeviceLimits
    wandering: WanderingSpec
    bins: BinsSpec

    @classmethod
    def compile(cls, site: SiteRules) -> Limits:
        thresholds = []
        for name, spec in site.threshold.items():
            if not spec.enabled:
                continue
            op = next(
                n for n in ("above", "at_least", "below", "at_most") if getattr(spec, n) is not None
            )
            thresholds.append(
                Threshold(
                    name=name,
                    field=spec.field,
                    high=op in ("above", "at_least"),
                    inclusive=op in ("at_least", "at_most"),
                    limit=float(getattr(spec, op)),
                    clear_at=spec.clear_at,
                    hold_ms=round(spec.hold * 1000),
                    clear_ms=round(spec.clear_for * 1000),
                    at_rest=spec.at_rest,
                    severity=spec.severity,
                )
            )
        start, _, end = site.waking_hours.partition("-")
        return cls(
            thresholds=tuple(thresholds),
            waking_start_min=_minute_of_day(start),
            waking_end_min=_minute_of_day(end),
            news2=site.news2,
            baseline=site.baseline,
            events=site.events,
            inactivity=site.inactivity,
            device=site.device,
            wandering=site.wandering,
            bins=site.bins,
        )

    def personal(self, vital_limits: Mapping[str, Any]) -> Limits:
        """These limits with a resident's own (`{"hr_high": 130}`); unknown keys are ignored."""
        if not vital_limits:
            return self
        moved = tuple(
            t.moved_to(float(vital_limits[t.name])) if _is_number(vital_limits.get(t.name)) else t
            for t in self.thresholds
        )
        return self if moved == self.thresholds else replace(self, thresholds=moved)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A validated rules file: global settings, the default limits and each grid's."""

    source: str
    timezone: str
    lateness_ms: int
    utc_offset_ms: int
    default: Limits
    grids: Mapping[str, Limits]

    def for_grid(self, grid_id: int | None, grid_name: str | None) -> Limits:
        grids = self.grids
        if grids:
            if grid_id is not None and (found := grids.get(str(grid_id))) is not None:
                return found
            if grid_name is not None and (found := grids.get(grid_name)) is not None:
                return found
        return self.default


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _explain(source: str, exc: ValidationError, prefix: str = "") -> RulesFileError:
    lines = [f"{source}: the rules are not valid:"]
    for error in exc.errors():
        where = ".".join([*([prefix] if prefix else []), *(str(p) for p in error["loc"])])
        lines.append(f"  {where or '(top level)'}: {error['msg']}")
    return RulesFileError("\n".join(lines))


def parse_rules(overrides: Mapping[str, Any], source: str = "<rules>") -> RuleSet:
    """Validate rules (laid over the defaults) and compile them; RulesFileError says why not."""
    raw = _merge(tomllib.loads(DEFAULT_FILE.read_text(encoding="utf-8")), overrides)
    grids_raw = raw.pop("grids", {}) or {}
    try:
        base = RulesFile.model_validate(raw)
    except ValidationError as exc:
        raise _explain(source, exc) from None
    if not isinstance(grids_raw, Mapping):
        msg = f"{source}: `grids` must be a table of tables, one per grid id or name"
        raise RulesFileError(msg)
    site_keys = set(SiteRules.model_fields)
    grids: dict[str, Limits] = {}
    site_raw = {k: v for k, v in raw.items() if k in site_keys}
    for grid, over in grids_raw.items():
        if not isinstance(over, Mapping):
            msg = f"{source}: grids.{grid} must be a table"
            raise RulesFileError(msg)
        try:
            site = SiteRules.model_validate(_merge(site_raw, over))
        except ValidationError as exc:
            raise _explain(source, exc, f"grids.{grid}") from None
        grids[str(grid)] = Limits.compile(site)
    zone = zoneinfo.ZoneInfo(base.timezone)
    offset = datetime.now(UTC).astimezone(zone).utcoffset()
    return RuleSet(
        source=source,
        timezone=base.timezone,
        lateness_ms=round(base.lateness * 1000),
        utc_offset_ms=round(offset.total_seconds() * 1000) if offset is not None else 0,
        default=Limits.compile(base),
        grids=grids,
    )


def load_rules(path: Path | None) -> RuleSet:
    """The rules of `path` over the defaults (just the defaults when None)."""
    if path is None:
        return parse_rules({}, str(DEFAULT_FILE))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"cannot read the rules file {path}: {exc}; check CAREWATCH_RULES__FILE"
        raise RulesFileError(msg) from exc
    try:
        overrides = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise RulesFileError(msg) from exc
    return parse_rules(overrides, str(path))
