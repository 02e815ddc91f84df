"""A fall from the simulator to the family's phone: Mosquitto, ingester, rules, alerts, apprise.

Each test registers one resident (张建国, a man born 1945: the family reads 张大爷) with
a wristband, a son as emergency contact (SMS, then WeChat), a grid worker, the grid's
supervisor and the community's duty centre, and runs the ingester with its rule engine
and alert service in a thread (`ThreadedIngest`). Notifications go through apprise's
`json://` to a local HTTP receiver standing in for the SMS and WeChat providers, so
what is asserted is what went over the wire. The ladder climbs in seconds here
(`ESCALATE`); the bounds on time are generous, the figures are printed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select

from alerts.service import AlertService
from alerts.tables import ACKNOWLEDGED, FIRING, Alert, AlertEvent, Notification
from carewatch.migrations import migrate
from core.db import Database
from core.settings import MqttTarget, Settings
from devices.tables import Building, EmergencyContact, Resident
from rules.findings import Finding, Severity, SubjectKind, read_findings
from simulators.credentials import derive_password
from simulators.fleet import run_fleet
from simulators.manifest import build_fleet
from simulators.models import FleetConfig, FleetReport
from simulators.scenarios import parse_spec
from tests.support.receiver import NotificationReceiver as Receiver
from tests.support.seeds import (
    DUTY_PHONE,
    SUPERVISOR_PHONE,
    WORKER_PHONE,
    bind_band,
    seed_care_grid,
)
from tests.support.seeds import WORKER_WECHAT as WORKER_WECHAT_ID
from tests.support.servers import HOST, InfluxDB, Mosquitto
from tests.support.stack import StartIngest, ThreadedIngest, stack_settings
from tests.support.waiting import wait_until

T = TypeVar("T")

PREFIX = "alerts-"
SECRET = "alerts-e2e-secret"
DEVICE = f"{PREFIX}w0000"
ESCALATE = 3.0  # critical_escalate_after: the supervisor after 3 s, the duty centre 6 s later
BACKOFF = 0.2  # retry_backoff: 0.2 s, then 0.4 s

# Where each person's messages arrive: /<channel>/<target>.
CONTACT_SMS = "/sms/13800000001"
CONTACT_WECHAT = "/wechat/zhangxm"
WORKER_WECHAT = f"/wechat/{WORKER_WECHAT_ID}"
WORKER_SMS = f"/sms/{WORKER_PHONE}"
SUPERVISOR = f"/sms/{SUPERVISOR_PHONE}"
DUTY = f"/sms/{DUTY_PHONE}"
# A fall is critical: rung 0 hears on every channel at once.
FIRST_RUNG = (CONTACT_SMS, CONTACT_WECHAT, WORKER_WECHAT, WORKER_SMS)


# -- the provider stand-in ----------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as state:
        yield state


# -- the registry, the service, the fleet -------------------------------------------------


@dataclass(frozen=True)
class Home:
    resident_id: int
    grid_id: int


async def register(url: str) -> Home:
    """One community, grid, worker, supervisor and resident with a son, and the band DEVICE."""
    database = Database(url)
    try:
        await migrate(database)
        async with database.sessions() as session, session.begin():
            care = await seed_care_grid(session)
            building = Building(community_id=care.community_id, grid_id=care.grid_id, name="3栋")
            session.add(building)
            await session.flush()
            resident = Resident(
                grid_id=care.grid_id,
                building_id=building.id,
                name="张建国",
                gender="男",
                birth_year=1945,
                room="201",
                health_notes="高血压",
            )
            resident.contacts.append(
                EmergencyContact(
                    position=0,
                    name="张小明",
                    relation="儿子",
                    phone=CONTACT_SMS.rsplit("/", 1)[1],
                    wechat=CONTACT_WECHAT.rsplit("/", 1)[1],
                    channels=["sms", "wechat"],
                )
            )
            session.add(resident)
            await session.flush()
            await bind_band(session, DEVICE, resident.id, care.grid_id)
            return Home(resident.id, care.grid_id)
    finally:
        await database.dispose()


@dataclass
class Stack:
    settings: Settings
    home: Home
    receiver: Receiver
    mosquitto: Mosquitto

    @property
    def findings_file(self) -> Path:
        return self.settings.state_dir / "findings.jsonl"


@pytest.fixture
def stack(
    mosquitto: Mosquitto,
    influxdb: InfluxDB,
    database: str,
    tmp_path: Path,
    receiver: Receiver,
) -> Stack:
    url = f"sqlite+aiosqlite:///{tmp_path / 'reg.db'}"
    home = asyncio.run(register(url))
    settings = stack_settings(
        mosquitto,
        influxdb.url,
        database,
        tmp_path / "state",
        database_url=url,
        secret_key="alerts-e2e-signing-key-0123456789",
        alerts={
            "sms_url": receiver.url("/sms/{phone}"),
            "wechat_url": receiver.url("/wechat/{wechat}"),
            "critical_escalate_after": ESCALATE,
            "retry_backoff": BACKOFF,
            "dispatch_interval": 0.1,
            "quiet_hours": "00:00-00:00",  # none: a warning goes out at any hour of the run
        },
    )
    return Stack(settings, home, receiver, mosquitto)


def start(stack: Stack, start_ingest: StartIngest) -> ThreadedIngest:
    ingest = start_ingest(stack.settings, with_alerts=True)
    assert ingest.service is not None and ingest.alerts is not None, ingest.error
    wait_until(ingest.service.subscriber.connected.is_set, 10, "the subscription")
    return ingest


def on_loop(ingest: ThreadedIngest, work: Callable[[AlertService], Coroutine[Any, Any, T]]) -> T:
    """Run `work(alert service)` on the service's own loop (its database, its dispatcher)."""
    loop = ingest._loop  # ThreadedIngest keeps it private; the verbs must run on it
    assert ingest.alerts is not None and loop is not None
    return asyncio.run_coroutine_threadsafe(work(ingest.alerts), loop).result(10)


async def all_alerts(service: AlertService) -> list[Alert]:
    async with service.database.sessions() as session:
        return list((await session.scalars(select(Alert).order_by(Alert.id))).all())


async def all_notifications(service: AlertService) -> list[Notification]:
    async with service.database.sessions() as session:
        stmt = select(Notification).order_by(Notification.id)
        return list((await session.scalars(stmt)).all())


async def all_events(service: AlertService) -> list[AlertEvent]:
    async with service.database.sessions() as session:
        return list((await session.scalars(select(AlertEvent).order_by(AlertEvent.id))).all())


def settled_notifications(ingest: ThreadedIngest) -> list[Notification]:
    """The outbox once nothing due is unsent (the receiver answers before the row is updated)."""
    rows: list[Notification] = []

    def settled() -> bool:
        rows[:] = on_loop(ingest, all_notifications)
        now = datetime.now(UTC)
        return not any(
            n.state == "sending" or (n.state == "pending" and n.due_at <= now) for n in rows
        )

    wait_until(settled, 5, "the notification rows' outcomes", step=0.05)
    return rows


class Fleet:
    """One simulated wristband (DEVICE) with a scripted fall, run on its own loop in a thread."""

    def __init__(self, mosquitto: Mosquitto, fall_after: float = 1.0) -> None:
        self.config = FleetConfig(
            wristbands=1,
            bins=0,
            interval=1.0,
            seed=7,
            prefix=PREFIX,
            secret=SECRET,
            incidents=(parse_spec(f"fall@w0000+{round(fall_after * 1000)}ms"),),
            location=False,
            deposit_rate=0.0,
        )
        (spec,) = build_fleet(self.config)
        assert spec.device_id == DEVICE
        mosquitto.add_users([(DEVICE, derive_password(SECRET, DEVICE))])
        self.target = MqttTarget(
            host=HOST, port=mosquitto.port, tls=False, username=None, password=None
        )
        self.report: FleetReport | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def drive() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            self.report = await run_fleet(self.config, self.target, stop=self._stop)

        try:
            asyncio.run(drive())
        except BaseException as exc:  # surfaced by __exit__
            self.error = exc
            self._ready.set()

    def __enter__(self) -> Fleet:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)
        if self.error is not None:
            raise self.error
        assert self.report is not None and self.report.acked > 0, self.report


def fall_ts(stack: Stack, timeout: float = 10.0) -> float:
    """The fall's own ts (the band stamps it as it publishes), in seconds."""
    falls: list[Finding] = []

    def found() -> bool:
        falls[:] = [f for f in read_findings(stack.findings_file) if f.rule == "fall"]
        return bool(falls)

    wait_until(found, timeout, "the fall finding", step=0.05)
    assert {f.subject for f in falls} == {DEVICE}
    return falls[0].ts / 1000


def low_spo2(stack: Stack) -> Finding:
    """A warning for the resident, as the rule engine would publish it (not latched)."""
    now = int(time.time() * 1000)
    return Finding(
        rule="spo2_low",
        subject_kind=SubjectKind.WRISTBAND,
        subject=DEVICE,
        active=True,
        severity=Severity.WARNING,
        ts=now,
        since=now - 120_000,
        device_id=DEVICE,
        resident_id=stack.home.resident_id,
        grid_id=stack.home.grid_id,
        value=88.0,
        limit=90.0,
    )


def sent_per_path(rows: list[Notification]) -> collections.Counter[str]:
    return collections.Counter(f"/{n.channel}/{n.target}" for n in rows if n.state == "sent")


# -- the tests ------------------------------------------------------------------------------


def test_a_fall_reaches_every_first_rung_recipient_in_chinese_within_seconds(
    stack: Stack, start_ingest: StartIngest
) -> None:
    receiver = stack.receiver
    ingest = start(stack, start_ingest)
    with Fleet(stack.mosquitto):
        first = receiver.wait_for(*FIRST_RUNG, timeout=20)
        fell = fall_ts(stack)
    latency = {path: post.at - fell for path, post in first.items()}
    print("\nfall -> receiver latency:", {p: f"{s * 1000:.0f} ms" for p, s in latency.items()})
    assert all(0 <= s < 10 for s in latency.values()), latency

    family = first[CONTACT_SMS].message
    assert family.startswith("【紧急】张大爷"), family
    assert "疑似跌倒" in family and "幸福小区" in family and "/a/" in family
    assert "网格员王芳" in family  # the family knows the worker was told as well
    assert "高血压" not in family  # health notes are for the worker
    assert first[CONTACT_WECHAT].message == family  # the same text on both channels
    assert first[CONTACT_SMS].title.startswith("【紧急】")
    worker = first[WORKER_WECHAT].message
    assert worker.startswith("【紧急】张建国"), worker
    assert "疑似跌倒" in worker and "高血压" in worker and "201" in worker
    assert first[WORKER_SMS].message == worker
    # Each first-rung message once, and nobody else yet (the ladder's timing: below).
    assert collections.Counter(p.path for p in receiver.posts) == dict.fromkeys(FIRST_RUNG, 1)

    (alert,) = on_loop(ingest, all_alerts)
    assert (alert.rule, alert.severity, alert.state) == ("fall", "critical", FIRING)
    assert alert.resident_id == stack.home.resident_id and alert.latched


def test_acknowledging_stops_the_escalation(stack: Stack, start_ingest: StartIngest) -> None:
    receiver = stack.receiver
    ingest = start(stack, start_ingest)
    with Fleet(stack.mosquitto):
        first = receiver.wait_for(*FIRST_RUNG, timeout=20)
        raised = min(p.at for p in first.values())
        (alert,) = on_loop(ingest, all_alerts)
        on_loop(ingest, lambda service: service.acknowledge(alert.id, "王芳"))
        acked = time.time()
        assert acked < raised + ESCALATE, "acknowledged too late to test anything; slow machine?"
        # Past the supervisor's time and well into the duty centre's gap.
        time.sleep(max(0.0, raised + ESCALATE + 2.5 - time.time()))
    (alert,) = on_loop(ingest, all_alerts)
    assert (alert.state, alert.acked_by, alert.next_step_at) == (ACKNOWLEDGED, "王芳", None)
    assert receiver.to(SUPERVISOR, ok_only=False) == []
    assert receiver.to(DUTY, ok_only=False) == []
    # The family hears that 王芳 is on it; 王芳, who answered, is not told about herself.
    for path in (CONTACT_SMS, CONTACT_WECHAT):
        after = [p for p in receiver.to(path) if p.at >= acked]
        assert len(after) == 1 and "王芳" in after[0].message, after
    assert not [
        p for p in receiver.posts if p.path in (WORKER_WECHAT, WORKER_SMS) and p.at >= acked
    ]
    assert not any("再次提醒" in p.message for p in receiver.posts)


def test_nobody_answers_so_the_supervisor_then_the_duty_centre_are_told(
    stack: Stack, start_ingest: StartIngest
) -> None:
    receiver = stack.receiver
    ingest = start(stack, start_ingest)
    with Fleet(stack.mosquitto):
        first = receiver.wait_for(*FIRST_RUNG, timeout=20)
        boss = receiver.wait_for(SUPERVISOR, timeout=ESCALATE + 10)[SUPERVISOR]
        duty = receiver.wait_for(DUTY, timeout=3 * ESCALATE + 10)[DUTY]
    (alert,) = on_loop(ingest, all_alerts)
    opened = alert.opened_at.timestamp()
    to_boss, to_duty = boss.at - opened, duty.at - opened
    print(f"\nalert opened -> supervisor {to_boss:.2f} s, -> duty centre {to_duty:.2f} s")
    # Rung 1 after ESCALATE, rung 2 after twice that again: never early, not much late.
    assert ESCALATE - 0.05 <= to_boss <= ESCALATE + 5
    assert 3 * ESCALATE - 0.05 <= to_duty <= 3 * ESCALATE + 8
    assert min(p.at for p in first.values()) < boss.at < duty.at
    for post in (boss, duty):
        assert post.message.startswith("【紧急】已升级"), post.message
        assert "张建国" in post.message and "疑似跌倒" in post.message
    # With the supervisor, rung 0 is reminded on its first channel.
    reminded = [p for p in receiver.to(CONTACT_SMS) if "再次提醒" in p.message]
    assert reminded and all(boss.at - 1 <= p.at for p in reminded)
    assert alert.state == FIRING and alert.step == 2


def test_a_failing_sms_provider_is_retried_then_the_contact_gets_wechat(
    stack: Stack, start_ingest: StartIngest
) -> None:
    receiver = stack.receiver
    receiver.failing = ("/sms/",)
    ingest = start(stack, start_ingest)
    finding = low_spo2(stack)
    on_loop(ingest, lambda service: service.publish([finding]))
    receiver.wait_for(CONTACT_WECHAT, WORKER_WECHAT, timeout=15)

    tries = receiver.to(CONTACT_SMS, ok_only=False)
    assert [p.status for p in tries] == [500, 500, 500]
    gaps = [b.at - a.at for a, b in itertools.pairwise(tries)]
    print("\nSMS retries after", [f"{g:.2f} s" for g in gaps])
    assert gaps[0] >= 0.8 * BACKOFF and gaps[1] >= 0.8 * 2 * BACKOFF, gaps
    (wechat,) = receiver.to(CONTACT_WECHAT)
    assert wechat.at >= tries[-1].at
    assert "张大爷" in wechat.message and "【紧急】" not in wechat.message, wechat.message
    # The worker's first channel is WeChat, which works: one message, no SMS.
    assert len(receiver.to(WORKER_WECHAT)) == 1 and receiver.to(WORKER_SMS, ok_only=False) == []

    rows = settled_notifications(ingest)
    contact = [n for n in rows if n.recipient_key.startswith("contact:")]
    assert [(n.channel, n.state, n.attempts) for n in contact] == [
        ("sms", "failed", 3),
        ("wechat", "sent", 1),
    ]
    assert "500" in (contact[0].last_error or ""), contact[0].last_error
    kinds = [e.kind for e in on_loop(ingest, all_events) if e.recipient == "张小明"]
    assert kinds == ["failed", "failed", "fallback", "notified"]


def test_a_restart_mid_escalation_goes_on_up_the_ladder_and_repeats_nothing(
    stack: Stack, start_ingest: StartIngest
) -> None:
    receiver = stack.receiver
    ingest = start(stack, start_ingest)
    with Fleet(stack.mosquitto):
        receiver.wait_for(*FIRST_RUNG, timeout=20)
        (alert,) = on_loop(ingest, all_alerts)
        assert alert.next_step_at is not None
        due = alert.next_step_at.timestamp()  # the supervisor's rung
        ingest.stop()
        stopped = time.time()
        assert stopped < due, "stopped after the escalation was due; slow machine?"
        # Down across the supervisor's time: the step must wait for the new service.
        time.sleep(due + 0.5 - time.time())
        assert receiver.to(SUPERVISOR, ok_only=False) == []
        restarted = time.time()
        ingest = start(stack, start_ingest)
        boss = receiver.wait_for(SUPERVISOR, timeout=10)[SUPERVISOR]
        time.sleep(1.0)  # anything sent twice would come now
        rows = settled_notifications(ingest)
        alerts = on_loop(ingest, all_alerts)
    print(
        f"\ndown {restarted - stopped:.2f} s; the supervisor told "
        f"{boss.at - restarted:.2f} s after the restart"
    )
    assert boss.at > restarted and boss.message.startswith("【紧急】已升级")
    # One alert, not reopened: the fall was not judged again after the restart.
    (alert,) = alerts
    assert (alert.rule, alert.reopened, alert.step) == ("fall", 0, 1)
    # Nobody got the same message twice, and every POST is exactly one `sent` row.
    texts = collections.Counter((p.path, p.message) for p in receiver.posts)
    assert all(n == 1 for n in texts.values()), [k for k, n in texts.items() if n > 1]
    assert collections.Counter(p.path for p in receiver.posts) == sent_per_path(rows)
    assert {n.state for n in rows} == {"sent"}
    assert (
        collections.Counter((n.step, n.recipient_key, n.channel) for n in rows).most_common(1)[0][1]
        == 1
    )
