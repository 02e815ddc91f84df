"""A batch of findings leaves the alert book exactly as applying them one by one would.

The batch reads what it needs up front and defers new alerts' messages to one flush
(`AlertBook.apply_all`); these sequences are the cases where that could go wrong: a
condition opening and clearing inside one batch, a resident's second rule joining a
group whose head is new in the same batch, a reopening of an alert the batch closed.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from alerts.tables import Alert, AlertEvent, Notification
from rules.findings import Finding, Severity, SubjectKind
from tests.integration.test_alert_lifecycle import World

Step = tuple[str, str, bool, Severity]  # subject, rule, active, severity

W, C = Severity.WARNING, Severity.CRITICAL
SEQUENCES: dict[str, list[Step]] = {
    "opened and cleared in one batch": [("w1", "hr_high", True, W), ("w1", "hr_high", False, W)],
    "a second rule joins a new head": [("w1", "hr_high", True, W), ("w1", "spo2_low", True, W)],
    "a worse rule heads, the first joins": [
        ("w1", "hr_high", True, W),
        ("w1", "fall", True, C),
        ("w1", "spo2_low", True, W),
    ],
    "closed and back within the flap window": [
        ("w1", "hr_high", True, W),
        ("w1", "hr_high", False, W),
        ("w1", "hr_high", True, W),
        ("w1", "hr_high", False, W),
        ("w1", "hr_high", True, W),
    ],
    "severity rises on a new alert": [("w1", "news2", True, W), ("w1", "news2", True, C)],
    "the head clears, its member speaks for itself": [
        ("w1", "hr_high", True, W),
        ("w1", "spo2_low", True, W),
        ("w1", "hr_high", False, W),
    ],
}


def _random_sequence(seed: int) -> list[Step]:
    rng = random.Random(seed)
    out: list[Step] = []
    for _ in range(40):
        subject = rng.choice(["w1", "w2", "b1"])
        rule = rng.choice(["hr_high", "spo2_low", "battery_low"])
        out.append((subject, rule, rng.random() < 0.6, rng.choice([W, W, C])))
    return out


SEQUENCES |= {f"random {seed}": _random_sequence(seed) for seed in range(6)}


def _finding(world: World, step: Step, i: int) -> Finding:
    subject, rule, active, severity = step
    ms = int(world.clock.now.timestamp() * 1000) + i
    bin_ = subject.startswith("b")
    return Finding(
        rule=rule,
        subject_kind=SubjectKind.BIN if bin_ else SubjectKind.WRISTBAND,
        subject=subject,
        active=active,
        severity=severity,
        ts=ms,
        since=ms,
        device_id=subject,
        resident_id=None if bin_ else world.resident_id,
        grid_id=world.grid_id,
    )


async def _book(world: World) -> tuple[list[tuple[object, ...]], Counter[tuple[object, ...]]]:
    """Alerts in order with their fields, and what each one's timeline and outbox hold."""
    async with world.database.sessions() as session:
        alerts = (await session.scalars(select(Alert).order_by(Alert.id))).all()
        rank = {a.id: i for i, a in enumerate(alerts)}
        rows: list[tuple[object, ...]] = [
            (
                a.rule,
                a.subject,
                a.state,
                a.severity,
                a.step,
                a.reopened,
                a.flapping,
                rank.get(a.group_id) if a.group_id else None,
            )
            for a in alerts
        ]
        # Within one batch the timeline's rows are written in another order: compared as sets.
        held: Counter[tuple[object, ...]] = Counter()
        for e in await session.scalars(select(AlertEvent)):
            detail = {k: rank.get(v, v) if k == "alert" else v for k, v in e.detail.items()}
            held[("event", rank[e.alert_id], e.kind, str(sorted(detail.items())))] += 1
        for n in await session.scalars(select(Notification)):
            key = ("message", rank.get(n.alert_id or 0), n.step, n.kind, n.recipient_key, n.channel)
            held[(*key, n.state, n.title)] += 1
    return rows, held


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_one_batch_is_the_same_as_one_finding_at_a_time(tmp_path: Path, name: str) -> None:
    steps = SEQUENCES[name]

    async def run(folder: Path, batch: bool) -> tuple[object, ...]:
        world = World(folder)
        await world.setup()
        findings = [_finding(world, s, i) for i, s in enumerate(steps)]
        if batch:
            await world.service.publish(findings)
        else:
            for finding in findings:
                await world.service.publish([finding])
        book = await _book(world)
        await world.database.dispose()
        world.receiver.stop()
        return book

    one_by_one = asyncio.run(run(tmp_path / "single", batch=False))
    batched = asyncio.run(run(tmp_path / "batch", batch=True))
    assert batched == one_by_one
