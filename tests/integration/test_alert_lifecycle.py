"""The alert lifecycle and dispatcher over a real (SQLite) registry, with injected time.

Messages go through apprise to a real local HTTP receiver standing in for the
providers; these tests are about who is told what, when, and never twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from alerts import links
from alerts.channels import Channels, Delivery
from alerts.service import AlertService
from alerts.tables import ACKNOWLEDGED, FIRING, RESOLVED, Alert, AlertEvent, Notification
from carewatch.migrations import migrate
from core.db import Database
from core.settings import Settings
from devices.tables import EmergencyContact, Resident
from rules.findings import Finding, Severity, SubjectKind
from tests.support.receiver import NotificationReceiver
from tests.support.seeds import seed_care_grid

# 2026-06-01 10:00 Asia/Shanghai: daytime, outside quiet hours.
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class World:
    """A registry with one grid, its worker, supervisor and duty centre, and one resident."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = Clock()
        self.receiver = NotificationReceiver().start()
        self.channels = Channels()
        self.settings = Settings(
            state_dir=tmp_path / "state",
            secret_key="lifecycle-test-signing-key-0123456789",
            alerts={
                "sms_url": self.receiver.url("/sms/{phone}"),
                "wechat_url": self.receiver.url("/wechat/{wechat}"),
            },
        )
        self.database = Database(f"sqlite+aiosqlite:///{tmp_path / 'alerts.db'}")
        self.service = self.new_service()

    def new_service(self) -> AlertService:
        """A fresh service over the same database: what a restart is."""
        return AlertService(
            self.settings,
            self.database,
            channels=self.channels,
            clock=self.clock,
        )

    async def setup(self) -> None:
        await migrate(self.database)
        async with self.database.sessions() as session, session.begin():
            care = await seed_care_grid(session)
            resident = Resident(
                grid_id=care.grid_id,
                name="张建国",
                gender="男",
                birth_year=1945,
                unit="1单元",
                room="201",
                health_notes="高血压",
            )
            resident.contacts.append(
                EmergencyContact(
                    position=0,
                    name="张小明",
                    relation="儿子",
                    phone="13800000001",
                    wechat="zhangxm",
                    channels=["sms", "wechat"],
                )
            )
            session.add(resident)
            await session.flush()
            self.grid_id = care.grid_id
            self.resident_id = resident.id

    @property
    def sent(self) -> list[tuple[str, str, str]]:
        """(url, title, body) of every POST the receiver got, failed ones too."""
        with self.receiver.lock:
            return [(self.receiver.url(p.path), p.title, p.message) for p in self.receiver.posts]

    def finding(
        self,
        rule: str,
        *,
        active: bool = True,
        severity: Severity = Severity.CRITICAL,
        latched: bool = False,
    ) -> Finding:
        ms = int(self.clock.now.timestamp() * 1000)
        return Finding(
            rule=rule,
            subject_kind=SubjectKind.WRISTBAND,
            subject="w1",
            active=active,
            severity=severity,
            ts=ms,
            since=ms,
            device_id="w1",
            resident_id=self.resident_id,
            grid_id=self.grid_id,
            latched=latched,
        )

    async def alerts(self) -> list[Alert]:
        async with self.database.sessions() as session:
            return list((await session.scalars(select(Alert).order_by(Alert.id))).all())

    async def notifications(self) -> list[Notification]:
        async with self.database.sessions() as session:
            rows = await session.scalars(select(Notification).order_by(Notification.id))
            return list(rows.all())

    async def events(self, kind: str | None = None) -> list[AlertEvent]:
        async with self.database.sessions() as session:
            stmt = select(AlertEvent).order_by(AlertEvent.id)
            if kind is not None:
                stmt = stmt.where(AlertEvent.kind == kind)
            return list((await session.scalars(stmt)).all())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    asyncio.run(w.setup())
    yield w
    asyncio.run(w.database.dispose())
    w.receiver.stop()


def test_a_fall_reaches_family_on_every_channel_and_the_worker_at_once(world: World) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("fall", latched=True)])
        await world.service.dispatcher.step()
        sent = sorted(url.split("/", 3)[3] for url, _, _ in world.sent)
        assert sent == ["sms/13800000001", "sms/13900000001", "wechat/wangfang", "wechat/zhangxm"]
        body = next(b for u, _, b in world.sent if u.endswith("sms/13800000001"))
        assert body.startswith("【紧急】张大爷")
        assert "疑似跌倒" in body and "/a/" in body
        (alert,) = await world.alerts()
        assert (alert.state, alert.step, alert.latched) == (FIRING, 0, True)
        assert alert.next_step_at == T0 + timedelta(minutes=5)
        assert len(await world.events("notified")) == 4

    asyncio.run(run())


def test_nobody_answers_so_the_ladder_is_walked_at_growing_intervals(world: World) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("fall", latched=True)])
        await world.service.dispatcher.step()
        steps: list[tuple[float, list[str]]] = []
        for _ in range(6):
            (alert,) = await world.alerts()
            assert alert.next_step_at is not None
            world.clock.now = alert.next_step_at
            before = len(world.sent)
            await world.service.dispatcher.step()
            minutes = (world.clock.now - T0).total_seconds() / 60
            steps.append((minutes, sorted(u.split("/", 3)[3] for u, _, _ in world.sent[before:])))
        # Rung 1 (the supervisor) at 5 min, rung 2 (the duty centre) at 15, then reminders
        # to everyone at growing gaps, capped at 2 h.
        assert [m for m, _ in steps] == [5, 15, 35, 75, 155, 275]
        assert "sms/13900000002" in steps[0][1]  # the supervisor
        assert "sms/13900000003" in steps[1][1]  # the duty centre
        assert "sms/13900000003" not in steps[0][1]
        for _, sent in steps[2:]:
            assert {"sms/13900000002", "sms/13900000003"} <= set(sent)

    asyncio.run(run())


def test_acknowledging_stops_the_escalation_and_tells_the_others(world: World) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("fall", latched=True)])
        await world.service.dispatcher.step()
        (alert,) = await world.alerts()
        world.clock.advance(minutes=2)
        await world.service.acknowledge(alert.id, "王芳")
        await world.service.dispatcher.step()
        (alert,) = await world.alerts()
        assert (alert.state, alert.acked_by, alert.next_step_at) == (ACKNOWLEDGED, "王芳", None)
        ack_bodies = [b for u, _, b in world.sent[4:]]
        assert ack_bodies and all("王芳" in b for b in ack_bodies)
        # The family hears that someone is on it; the worker who answered does not.
        assert not any(u.endswith("wangfang") for u, _, _ in world.sent[4:])
        world.clock.advance(hours=5)
        before = len(world.sent)
        await world.service.dispatcher.step()
        assert len(world.sent) == before  # no more rungs

    asyncio.run(run())


def test_a_cleared_condition_resolves_its_alert_but_a_fall_waits_for_a_person(
    world: World,
) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("hr_high", severity=Severity.WARNING)])
        await world.service.publish([world.finding("fall", latched=True)])
        await world.service.publish(
            [
                world.finding("hr_high", active=False, severity=Severity.WARNING),
                world.finding("fall", active=False, latched=True),
            ]
        )
        by_rule = {a.rule: a for a in await world.alerts()}
        assert by_rule["hr_high"].state == RESOLVED
        assert by_rule["hr_high"].resolved_by == "system"
        assert by_rule["fall"].state == FIRING
        await world.service.resolve(by_rule["fall"].id, "王芳", "已上门，老人无碍")
        fall = {a.rule: a for a in await world.alerts()}["fall"]
        assert (fall.state, fall.resolution_note) == (RESOLVED, "已上门，老人无碍")

    asyncio.run(run())


def test_a_condition_that_keeps_returning_is_one_flapping_alert(world: World) -> None:
    async def run() -> None:
        for _ in range(5):
            await world.service.publish([world.finding("spo2_low", severity=Severity.WARNING)])
            await world.service.dispatcher.step()
            world.clock.advance(minutes=3)
            await world.service.publish(
                [world.finding("spo2_low", active=False, severity=Severity.WARNING)]
            )
            world.clock.advance(minutes=3)
        (alert,) = await world.alerts()
        assert alert.flapping and alert.reopened == 4
        raised = [n for n in await world.notifications() if n.kind in ("raised", "updated")]
        # Told at the first, second and third opening; then it is flapping and quiet.
        assert len({n.step for n in raised}) == 3

    asyncio.run(run())


def test_what_joined_an_incident_speaks_for_itself_once_the_incident_clears(
    world: World,
) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("hr_high", severity=Severity.WARNING)])
        world.clock.advance(minutes=1)
        await world.service.publish([world.finding("inactivity", severity=Severity.WARNING)])
        await world.service.dispatcher.step()
        told = len(world.sent)
        world.clock.advance(minutes=1)
        await world.service.publish(
            [world.finding("hr_high", active=False, severity=Severity.WARNING)]
        )
        await world.service.dispatcher.step()
        hr_high, inactivity = await world.alerts()
        assert hr_high.state == RESOLVED
        assert (inactivity.state, inactivity.group_id) == (FIRING, None)
        assert inactivity.next_step_at is not None  # owned again: the ladder runs for it
        news = [b for _, _, b in world.sent[told:]]
        assert any("未活动" in b for b in news)

    asyncio.run(run())


def test_one_incident_across_rules_notifies_once(world: World) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("fall", latched=True)])
        await world.service.dispatcher.step()
        sent = len(world.sent)
        world.clock.advance(minutes=1)
        await world.service.publish([world.finding("inactivity", severity=Severity.WARNING)])
        await world.service.dispatcher.step()
        assert len(world.sent) == sent
        fall, inactivity = await world.alerts()
        assert inactivity.group_id == fall.id
        assert [e.kind for e in await world.events("grouped")] == ["grouped"]
        # Acknowledging the incident acknowledges what joined it.
        await world.service.acknowledge(fall.id, "王芳")
        assert [a.state for a in await world.alerts()] == [ACKNOWLEDGED, ACKNOWLEDGED]

    asyncio.run(run())


def test_a_failing_channel_is_retried_then_the_next_channel_is_tried(world: World) -> None:
    async def run() -> None:
        world.receiver.failing = ("/sms/",)
        await world.service.publish([world.finding("hr_high", severity=Severity.WARNING)])
        for _ in range(4):
            await world.service.dispatcher.step()
            world.clock.advance(seconds=30)
        contact = [n for n in await world.notifications() if n.recipient_key.startswith("contact")]
        assert [(n.channel, n.state, n.attempts) for n in contact] == [
            ("sms", "failed", 3),
            ("wechat", "sent", 1),
        ]
        kinds = [e.kind for e in await world.events() if e.recipient == "张小明"]
        assert kinds == ["failed", "failed", "fallback", "notified"]

    asyncio.run(run())


def test_quiet_hours_hold_a_warning_until_morning_but_not_a_fall(world: World) -> None:
    async def run() -> None:
        world.clock.now = datetime(2026, 6, 1, 15, 30, tzinfo=UTC)  # 23:30 in Shanghai
        await world.service.publish([world.finding("battery_low", severity=Severity.WARNING)])
        await world.service.publish([world.finding("fall", latched=True)])
        await world.service.dispatcher.step()
        assert all("跌倒" in b for _, _, b in world.sent)
        held = [n for n in await world.notifications() if n.state == "pending"]
        assert held and {n.due_at for n in held} == {datetime(2026, 6, 1, 23, 0, tzinfo=UTC)}

    asyncio.run(run())


def test_a_restart_mid_send_never_sends_a_step_twice_and_the_ladder_goes_on(
    world: World,
) -> None:
    async def run() -> None:
        await world.service.publish([world.finding("fall", latched=True)])

        gate = asyncio.Event()
        original = world.channels.send

        async def hang(url: str, title: str, body: str) -> Delivery:
            await gate.wait()
            return await original(url, title, body)

        world.channels.send = hang  # type: ignore[method-assign]
        task = asyncio.create_task(world.service.dispatcher.step())
        await asyncio.sleep(0.2)
        task.cancel()  # the process dies while the provider is being called
        with pytest.raises(asyncio.CancelledError):
            await task
        world.channels.send = original  # type: ignore[method-assign]

        world.service = world.new_service()
        assert await world.service.dispatcher.recover() == 4
        await world.service.dispatcher.step()
        assert world.sent == []  # uncertain rows are not sent again
        (alert,) = await world.alerts()
        world.clock.now = alert.next_step_at or T0
        await world.service.dispatcher.step()
        assert any(u.endswith("sms/13900000002") for u, _, _ in world.sent)

    asyncio.run(run())


def test_information_waits_for_the_daily_digest(world: World) -> None:
    async def run() -> None:
        world.clock.now = datetime(2026, 5, 31, 23, 0, tzinfo=UTC)  # 07:00 on 1 June, local
        await world.service.dispatcher.step()
        await world.service.publish([world.finding("baseline_hr", severity=Severity.INFO)])
        await world.service.dispatcher.step()
        assert world.sent == []  # information is not pushed at once
        (alert,) = await world.alerts()
        assert (alert.state, alert.next_step_at) == (FIRING, None)
        world.clock.advance(hours=1, minutes=1)  # 08:01: the digest goes to the grid's worker
        await world.service.dispatcher.step()
        await world.service.dispatcher.step()
        ((url, _, body),) = world.sent
        assert url.endswith("wechat/wangfang") and "每日汇总" in body
        world.clock.advance(hours=3)
        await world.service.dispatcher.step()  # once a day
        assert len(world.sent) == 1

    asyncio.run(run())


# -- the lifecycle's promises under any sequence --------------------------------------------

OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("finding"),
            st.sampled_from(["fall", "hr_high", "inactivity"]),
            st.booleans(),
            st.sampled_from([Severity.WARNING, Severity.CRITICAL, Severity.INFO]),
        ),
        st.tuples(st.just("ack"), st.integers(0, 3)),
        st.tuples(st.just("resolve"), st.integers(0, 3)),
        st.tuples(st.just("wait"), st.sampled_from([30, 300, 1200, 7200])),
        st.tuples(st.just("fail"), st.booleans()),
        st.just(("restart",)),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_no_sequence_sends_a_step_twice_or_leaves_an_alert_unowned(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[object, ...]]
) -> None:
    world = World(tmp_path_factory.mktemp("prop"))

    async def run() -> None:
        await world.setup()
        for op in ops:
            kind = op[0]
            if kind == "finding":
                _, rule, active, severity = op
                await world.service.publish(
                    [
                        world.finding(
                            str(rule),
                            active=bool(active),
                            severity=severity,  # type: ignore[arg-type]
                            latched=rule == "fall",
                        )
                    ]
                )
            elif kind in ("ack", "resolve"):
                alerts = [a for a in await world.alerts() if a.state != RESOLVED]
                if alerts:
                    target = alerts[int(op[1]) % len(alerts)]  # type: ignore[call-overload]
                    if kind == "ack":
                        await world.service.acknowledge(target.id, "王芳")
                    else:
                        await world.service.resolve(target.id, "王芳", "done")
            elif kind == "wait":
                world.clock.advance(seconds=float(op[1]))  # type: ignore[arg-type]
            elif kind == "fail":
                world.receiver.failing = ("/sms/",) if op[1] else ()
            else:
                world.service = world.new_service()
                await world.service.dispatcher.recover()
            await world.service.dispatcher.step()
            await check_invariants(world)
        await world.database.dispose()

    try:
        asyncio.run(run())
    finally:
        world.receiver.stop()


async def check_invariants(world: World) -> None:
    notified = Counter(
        (e.alert_id, e.detail.get("step"), e.recipient, e.channel)
        for e in await world.events("notified")
    )
    assert all(count == 1 for count in notified.values()), notified
    # Every call to a provider is on record: nothing was sent behind the timeline's back.
    recorded = len(await world.events("notified")) + len(await world.events("failed"))
    recorded += len(await world.events("fallback")) + len(await world.events("uncertain"))
    recorded += sum(n.attempts for n in await world.notifications() if n.alert_id is None)
    assert len(world.sent) <= recorded
    open_keys: Counter[str] = Counter()
    alerts = await world.alerts()
    open_ids = {a.id for a in alerts if a.state != RESOLVED}
    for alert in alerts:
        if alert.state == FIRING:
            owned = (
                alert.group_id in open_ids  # its incident is still open
                or (alert.group_id is None and alert.next_step_at is not None)
                or alert.severity == "info"
            )
            assert owned, f"alert {alert.id} ({alert.rule}) is firing with nobody on the hook"
        if alert.state == ACKNOWLEDGED:
            assert alert.acked_by
        if alert.state != RESOLVED:
            assert alert.open_key is not None
            open_keys[alert.open_key] += 1
    assert all(count == 1 for count in open_keys.values())


def _bin_finding(world: World, device: str, rule: str = "bin_full") -> Finding:
    ms = int(world.clock.now.timestamp() * 1000)
    return Finding(
        rule=rule,
        subject_kind=SubjectKind.BIN,
        subject=device,
        active=True,
        severity=Severity.WARNING,
        ts=ms,
        since=ms,
        device_id=device,
        grid_id=world.grid_id,
    )


def test_a_burst_reaches_the_worker_as_one_message_and_families_one_by_one(world: World) -> None:
    async def run() -> None:
        bins = [_bin_finding(world, f"b{i}") for i in range(5)]
        await world.service.publish([*bins, world.finding("fall", latched=True)])
        await world.service.dispatcher.step()
        to_worker = {t: b for u, t, b in world.sent if u.endswith("/wechat/wangfang")}
        # The fall alone (critical: in full), the five bins in one (sent at once: any order).
        assert sorted(to_worker) == ["【提醒】5条告警待处理", "【紧急】张建国疑似跌倒"]
        lines = to_worker["【提醒】5条告警待处理"].splitlines()
        assert len(lines) == 6 and all("/a/" in line for line in lines[1:])
        family = [u for u, _, _ in world.sent if "zhangxm" in u or "13800000001" in u]
        assert len(family) == 2  # the fall, on both of the family's channels
        notified = await world.events("notified")
        assert [e.detail.get("bundle", 1) for e in notified].count(5) == 5
        # Each line's link acknowledges its own alert.
        token = lines[3].rsplit("/a/", 1)[1].rstrip("）")
        claim = links.verify(world.settings.secret_key or "", token, int(T0.timestamp()))
        assert claim is not None and claim.recipient_key.startswith("user:")
        alerts = {a.id: a for a in await world.alerts()}
        assert alerts[claim.alert_id].subject == "b2"

    asyncio.run(run())
