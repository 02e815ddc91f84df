"""The order the alert side applies a burst in: critical subjects first, each in its own order."""

from __future__ import annotations

from alerts.feed import by_priority
from rules.findings import Finding, Severity, SubjectKind


def finding(subject: str, rule: str, severity: Severity, active: bool = True) -> Finding:
    return Finding(
        rule=rule,
        subject_kind=SubjectKind.WRISTBAND,
        subject=subject,
        active=active,
        severity=severity,
        ts=1,
        since=1,
    )


def test_a_fall_in_a_burst_of_warnings_goes_first() -> None:
    burst = [finding(f"w{i}", "battery_low", Severity.WARNING) for i in range(50)]
    fall = finding("w99", "fall", Severity.CRITICAL)
    ordered = by_priority([*burst[:25], fall, *burst[25:]])
    assert ordered[0] == fall
    assert ordered[1:] == burst  # the rest keep their order


def test_a_subject_keeps_its_open_then_clear_order() -> None:
    opened = finding("w1", "spo2_low", Severity.WARNING)
    cleared = finding("w1", "spo2_low", Severity.WARNING, active=False)
    raised = finding("w1", "spo2_low", Severity.CRITICAL)
    other = finding("w2", "hr_high", Severity.WARNING)
    # w1's group holds a critical finding, so it goes first, in its own order.
    assert by_priority([other, opened, cleared, raised]) == [opened, cleared, raised, other]
