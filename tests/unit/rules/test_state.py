"""`Run`, the state machine behind every sustained rule."""

from __future__ import annotations

from rules.state import Run
from tests.support.rules import MIN, T0


def test_run_ignores_hits_from_before_its_last_break() -> None:
    run = Run()
    assert not run.observe(T0, True, 5 * MIN)
    assert not run.observe(T0 + 2 * MIN, False, 5 * MIN)
    assert not run.observe(T0 + MIN, True, 5 * MIN)  # older than the break
    assert run.idle
    assert not run.observe(T0 + 3 * MIN, True, 5 * MIN)
    assert run.observe(T0 + 8 * MIN, True, 5 * MIN)
