"""The rules file: defaults, errors that name the key, grid overrides, personal limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from protocol.models import Kind
from rules.config import DEFAULT_FILE, Limits, Threshold, load_rules, parse_rules
from rules.context import Profile, build_contexts
from rules.exceptions import RulesError, RulesFileError


def threshold(limits: Limits, name: str) -> Threshold:
    return next(t for t in limits.thresholds if t.name == name)


def test_defaults_compile() -> None:
    rules = load_rules(None)
    assert rules.source == str(DEFAULT_FILE)
    assert rules.lateness_ms == 120_000
    assert rules.utc_offset_ms == 8 * 3_600_000
    limits = rules.default
    assert (limits.waking_start_min, limits.waking_end_min) == (7 * 60, 21 * 60)
    hr_high = threshold(limits, "hr_high")
    assert (hr_high.limit, hr_high.clear_at, hr_high.hold_ms, hr_high.clear_ms) == (
        120,
        110,
        300_000,
        120_000,
    )
    assert hr_high.high and not hr_high.inclusive and hr_high.at_rest
    assert {t.name for t in limits.thresholds} == {
        "hr_high",
        "hr_low",
        "spo2_low",
        "spo2_critical",
        "sbp_high",
        "temp_high",
        "temp_low",
    }
    assert rules.grids == {}


@pytest.mark.parametrize(
    ("name", "value", "triggers", "clears"),
    [
        ("hr_high", 120, False, False),  # `above`: the limit itself does not trigger
        ("hr_high", 120.5, True, False),
        ("hr_high", 110, False, True),  # clear_at is inclusive
        ("hr_high", 110.5, False, False),
        ("sbp_high", 180, True, False),  # `at_least`: the limit triggers
        ("sbp_high", 179, False, False),
        ("spo2_low", 90, False, False),
        ("spo2_low", 89, True, False),
        ("spo2_low", 92, False, True),
        ("temp_low", 35.0, False, False),
        ("temp_low", 34.9, True, False),
    ],
)
def test_threshold_edges(name: str, value: float, triggers: bool, clears: bool) -> None:
    rule = threshold(load_rules(None).default, name)
    assert rule.triggers(value) is triggers
    assert rule.clears(value) is clears


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("bad duration", {"threshold": {"hr_high": {"for": "5 minutes"}}}, "threshold.hr_high.for"),
    ("negative duration", {"inactivity": {"no_steps_for": -5}}, "inactivity.no_steps_for"),
    (
        "clear level on the wrong side",
        {"threshold": {"hr_high": {"clear_at": 125}}},
        "threshold.hr_high: Value error, clear_at 125.0 must lie at or below the limit 120.0",
    ),
    (
        "two comparisons",
        {"threshold": {"hr_high": {"at_least": 125}}},
        "threshold.hr_high: Value error, give exactly one of above, at_least, below, at_most",
    ),
    (
        "a new threshold without clear_at",
        {"threshold": {"dbp_high": {"field": "dbp", "above": 110}}},
        "threshold.dbp_high.clear_at: Field required",
    ),
    ("unknown field", {"threshold": {"x": {"field": "rr", "above": 1}}}, "threshold.x.field"),
    ("a typo", {"threshold": {"hr_high": {"abov": 130}}}, "threshold.hr_high.abov: Extra inputs"),
    ("unknown section", {"vitals": {}}, "vitals: Extra inputs are not permitted"),
    ("bad severity", {"baseline": {"severity": "urgent"}}, "baseline.severity"),
    ("waking hours backwards", {"waking_hours": "21:00-07:00"}, "waking_hours"),
    ("waking hours not a time", {"waking_hours": "7-21"}, "waking_hours"),
    ("unknown zone", {"timezone": "Mars/Olympus"}, "timezone: Value error, unknown time zone"),
    ("bin hysteresis", {"bins": {"full_clear": 95}}, "bins: Value error, full_clear"),
    ("news2 order", {"news2": {"clear_total": 6}}, "news2: Value error, need clear_total"),
    ("battery order", {"device": {"battery_flat": 30}}, "device: Value error, need battery_flat"),
    ("baseline days", {"baseline": {"min_days": 20}}, "baseline: Value error, min_days (20)"),
    (
        "wandering hysteresis",
        {"wandering": {"clear_radius_m": 600}},
        "wandering: Value error, clear_radius_m",
    ),
    ("sorting target as a percentage", {"bins": {"sorting_target": 85}}, "bins.sorting_target"),
    (
        "prediction hysteresis",
        {"bins": {"predict_clear_hours": 2}},
        "bins: Value error, predict_clear_hours",
    ),
    (
        "a grid's bad value names the grid",
        {"grids": {"3": {"threshold": {"hr_high": {"above": "high"}}}}},
        "grids.3.threshold.hr_high.above",
    ),
    (
        "a grid may not change the time zone",
        {"grids": {"3": {"timezone": "UTC"}}},
        "grids.3.timezone: Extra inputs",
    ),
    ("a grid must be a table", {"grids": {"3": 5}}, "grids.3 must be a table"),
    ("grids must be tables", {"grids": 5}, "`grids` must be a table of tables"),
]


@pytest.mark.parametrize(("case", "overrides", "message"), BAD, ids=[c for c, _, _ in BAD])
def test_errors_name_the_key(case: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(RulesFileError) as info:
        parse_rules(overrides, "site.toml")
    text = str(info.value)
    assert text.startswith("site.toml")
    assert message in text


def test_load_rules_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('lateness = "30s"\n[threshold.hr_high]\nabove = 130\n', encoding="utf-8")
    rules = load_rules(path)
    assert rules.lateness_ms == 30_000
    hr_high = threshold(rules.default, "hr_high")
    assert (hr_high.limit, hr_high.clear_at, hr_high.hold_ms) == (130, 110, 300_000)


def test_load_rules_file_errors(tmp_path: Path) -> None:
    assert issubclass(RulesFileError, RulesError)  # callers catch the package's root
    with pytest.raises(RulesFileError, match="cannot read the rules file"):
        load_rules(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[threshold\n", encoding="utf-8")
    with pytest.raises(RulesFileError, match=r"broken\.toml: not valid TOML"):
        load_rules(broken)


def test_disabled_threshold_is_not_compiled() -> None:
    rules = parse_rules({"threshold": {"hr_low": {"enabled": False}}})
    assert "hr_low" not in {t.name for t in rules.default.thresholds}


def test_grid_overrides_by_id_and_by_name() -> None:
    rules = parse_rules(
        {
            "waking_hours": "06:30-21:00",
            "grids": {
                "3": {"threshold": {"hr_high": {"above": 130, "clear_at": 120}}},
                "网格02": {"inactivity": {"no_steps_for": "2h"}, "waking_hours": "08:00-20:00"},
            },
        }
    )
    by_id = rules.for_grid(3, "whatever")
    assert threshold(by_id, "hr_high").limit == 130
    assert threshold(by_id, "hr_high").clear_at == 120
    # A grid table lays over the site's own settings, not over the shipped defaults.
    assert by_id.waking_start_min == 6 * 60 + 30
    by_name = rules.for_grid(None, "网格02")
    assert by_name.inactivity.no_steps_for == 7200
    assert (by_name.waking_start_min, by_name.waking_end_min) == (8 * 60, 20 * 60)
    assert threshold(by_name, "hr_high").limit == 120
    # Others get the defaults, and the overrides do not leak into them.
    assert rules.for_grid(4, "网格09") is rules.default
    assert rules.for_grid(None, None) is rules.default
    assert threshold(rules.default, "hr_high").limit == 120


def test_personal_limits_move_the_clear_level_too() -> None:
    limits = load_rules(None).default
    mine = limits.personal({"hr_high": 130, "spo2_low": 88, "unknown": 5, "hr_low": None})
    assert (threshold(mine, "hr_high").limit, threshold(mine, "hr_high").clear_at) == (130, 120)
    assert (threshold(mine, "spo2_low").limit, threshold(mine, "spo2_low").clear_at) == (88, 90)
    assert threshold(mine, "hr_low") == threshold(limits, "hr_low")
    # The hold and the rest of the rule stay as the file says.
    assert threshold(mine, "hr_high").hold_ms == threshold(limits, "hr_high").hold_ms
    assert limits.personal({}) is limits
    assert limits.personal({"unknown": 1}) is limits
    assert limits.personal({"hr_high": True}) is limits  # a flag is not a limit


def test_contexts_apply_grid_then_person() -> None:
    rules = parse_rules({"grids": {"3": {"threshold": {"hr_high": {"above": 130}}}}})
    profiles = {
        "a": Profile("a", Kind.WRISTBAND, grid_id=3, vital_limits={"hr_high": 140}),
        "b": Profile("b", Kind.WRISTBAND, grid_id=3, interval_s=30),
        "c": Profile("c", Kind.WRISTBAND),
    }
    contexts = build_contexts(profiles, rules)
    assert threshold(contexts["a"].limits, "hr_high").limit == 140
    assert (
        threshold(contexts["a"].limits, "hr_high").clear_at == 120
    )  # the grid's 110, moved +10 with it
    assert threshold(contexts["b"].limits, "hr_high").limit == 130
    assert contexts["b"].interval_ms == 30_000
    assert contexts["c"].limits is rules.default
    assert contexts["c"].interval_ms == 60_000
