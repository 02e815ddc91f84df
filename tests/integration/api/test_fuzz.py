"""Schema-driven fuzz of the whole API (schemathesis): no 500s, every error is our JSON shape.

Every operation of the app's own OpenAPI document is driven with generated
requests, valid ones (positive) and invalid ones (negative), as the admin; the
operations a grid worker uses are driven again as `wang`. Residents, devices,
bindings, a visit, device state and API keys are seeded first, and generation
also names their ids, so requests reach past "404 not found". SQLite only,
`derandomize=True`: the same requests on every run (Hypothesis seeds from the
source of the test, so editing this file changes them).

Checks on every response:

- `not_a_server_error`, and no exception escapes the app (the test client
  re-raises what the 500 handler caught); the one 5xx allowed is telemetry's 503,
  as InfluxDB is not running here;
- `error_body_shape`: every 4xx/5xx is JSON `{"error": {"code", "message", "message_en"}}`;
- `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`
  against the app's OpenAPI with the patches in `patched_schema` (each says why).

Failures are collected, not shrunk, so one run lists every distinct problem
with a curl command that reproduces it.
"""

from __future__ import annotations

import copy
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import CheckContext, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.result import Ok
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from devices.tables import DeviceState
from rules.findings import Finding, Severity, SubjectKind
from tests.integration.api.conftest import PASSWORD, Api

AnyCase = Case[Any]
Operation = APIOperation[Any, Any, Any, Any]

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

POSITIVE_EXAMPLES: Final = 25  # per operation, as the admin
NEGATIVE_EXAMPLES: Final = 15
WORKER_EXAMPLES: Final = 10  # per operation as `wang` (and half as many negative ones)
MIN_CALLS: Final = 1_000  # a run makes about 1,250; far fewer means generation broke
BASE_URL: Final = "http://testserver"
# Ids past PostgreSQL's integer and past SQLite's (and bigint's): also named, now and then.
INTEGER_IDS: Final = frozenset(
    {"resident_id", "key_id", "grid_id", "community_id", "offset", "alert_id", "notice_id"}
)
EDGE_INTEGERS: Final = (2**31, 2**63)
ERROR_BODY: Final = {"$ref": "#/components/schemas/ErrorBody"}

# Operations that change what later ones find run last, in this order.
DESTRUCTIVE: Final = (
    "POST /api/v1/devices/{device_id}/revoke",
    "DELETE /api/v1/auth/api-keys/{key_id}",
    "DELETE /api/v1/residents/{resident_id}",
)
# What the grid worker drives: reads, and the writes a worker may make (or is refused).
WORKER_OPERATIONS: Final = frozenset(
    {
        "GET /api/v1/auth/me",
        "GET /api/v1/communities",
        "GET /api/v1/grids",
        "GET /api/v1/buildings",
        "GET /api/v1/users",
        "POST /api/v1/residents",
        "GET /api/v1/residents",
        "GET /api/v1/residents/{resident_id}",
        "PATCH /api/v1/residents/{resident_id}",
        "GET /api/v1/residents/{resident_id}/export",
        "POST /api/v1/residents/{resident_id}/visits",
        "GET /api/v1/residents/{resident_id}/visits",
        "GET /api/v1/visits/due",
        "GET /api/v1/devices/{device_id}",
        "POST /api/v1/devices/{device_id}/bind",
        "GET /api/v1/devices/{device_id}/bindings",
        "POST /api/v1/devices/{device_id}/restore",
        "GET /api/v1/status/devices",
        "GET /api/v1/alerts",
        "GET /api/v1/alerts/{alert_id}",
        "POST /api/v1/alerts/{alert_id}/ack",
        "POST /api/v1/alerts/{alert_id}/resolve",
        "POST /api/v1/alerts/{alert_id}/comments",
        "GET /api/v1/alerts/stats/response-times",
        "POST /api/v1/notices",
        "GET /api/v1/notices",
        "GET /api/v1/notices/{notice_id}",
        "POST /api/v1/notices/{notice_id}/checks/{resident_id}",
    }
)


# -- the schema fuzzed: the app's own, with these patches ---------------------------------

# InfluxDB is not running in this fixture: reading telemetry answers 503, by design.
TELEMETRY: Final = "GET /api/v1/residents/{resident_id}/telemetry"
EXPECTED_5XX: Final = frozenset({(TELEMETRY, 503, "telemetry_unavailable")})


def patched_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """The app's OpenAPI document, with what this test relaxes or corrects, each said here.

    1. Relaxed: a body that is not JSON at all gets 400 ("error parsing the body", our
       error shape), which no operation documents; it is added as a documented ErrorBody.
    2. Corrected: routers that document FastAPI's 422 body (HTTPValidationError,
       `{"detail": [...]}`) get ErrorBody, which the app sends (a documentation bug).
    """
    doc = copy.deepcopy(openapi)
    error = {"content": {"application/json": {"schema": ERROR_BODY}}}
    for ops in doc["paths"].values():
        for op in ops.values():
            responses = op["responses"]
            if "requestBody" in op:
                responses.setdefault("400", {"description": "body is not JSON", **error})
            schema_422 = responses.get("422", {}).get("content", {}).get("application/json", {})
            if schema_422.get("schema", {}).get("$ref", "").endswith("/HTTPValidationError"):
                schema_422["schema"] = ERROR_BODY
    return doc


# -- checks ---------------------------------------------------------------------------


def error_body_shape(
    ctx: CheckContext, response: schemathesis.Response, case: AnyCase
) -> bool | None:
    """Every 4xx/5xx is JSON {"error": {"code", "message", "message_en"}}, all non-empty strings."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    if not content_type.startswith("application/json"):
        raise Failure(
            operation=case.operation.label,
            title="Error body is not JSON",
            message=f"{response.status_code} with content-type {content_type!r}",
        )
    try:
        body = response.json()
    except ValueError as exc:
        raise Failure(
            operation=case.operation.label,
            title="Error body is not JSON",
            message=f"{response.status_code}: {exc}: {response.text[:200]!r}",
        ) from exc
    error = body.get("error") if isinstance(body, dict) else None
    missing = [
        key
        for key in ("code", "message", "message_en")
        if not isinstance(error, dict) or not isinstance(error.get(key), str) or not error.get(key)
    ]
    if missing:
        raise Failure(
            operation=case.operation.label,
            title="Error body lacks error fields",
            message=f"{response.status_code}: missing {missing} in {body!r:.300}",
        )
    return True


def no_server_error(
    ctx: CheckContext, response: schemathesis.Response, case: AnyCase
) -> bool | None:
    """`not_a_server_error`, but for the 5xx this fixture causes on purpose (EXPECTED_5XX)."""
    if response.status_code >= 500:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = None
        if (case.operation.label, response.status_code, code) in EXPECTED_5XX:
            return True
    return not_a_server_error(ctx, response, case)


CHECKS: Final = [
    no_server_error,
    error_body_shape,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@dataclass
class Run:
    """What the fuzz sent and found, across every operation."""

    client: httpx.Client
    calls: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: dict[tuple[str, str, int], str] = field(default_factory=dict)
    no_negative: list[str] = field(default_factory=list)

    def send(self, case: AnyCase, who: str, token: str) -> None:
        kwargs = case.as_transport_kwargs(
            base_url=BASE_URL, headers={"Authorization": f"Bearer {token}"}
        )
        kwargs.pop("cookies", None)
        if isinstance(kwargs.get("data"), str | bytes):  # a raw body (negative cases)
            kwargs["content"] = kwargs.pop("data")
        label = case.operation.label
        self.calls[f"{who} {label}"] += 1
        try:
            response = self.client.request(**kwargs)
        except Exception as exc:  # the test client re-raises what the app's 500 handler caught
            self.statuses[(label, 500)] += 1
            self._crash(case, who, label, exc)
            return
        self.statuses[(label, response.status_code)] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                self._add(
                    (f"{who} {label}", failure.title, response.status_code),
                    f"{failure.message[:700]}\n  body: {response.text[:300]}",
                    case,
                )

    def _crash(self, case: AnyCase, who: str, label: str, exc: Exception) -> None:
        self._add((f"{who} {label}", f"unhandled {type(exc).__name__}", 500), str(exc)[:700], case)

    def _add(self, key: tuple[str, str, int], detail: str, case: AnyCase) -> None:
        if key in self.failures:
            return
        curl = case.as_curl_command(headers={"Authorization": "Bearer <token>"}, base_url=BASE_URL)
        self.failures[key] = f"{key[0]} -> {key[2]}: {key[1]}\n  {detail}\n  {curl[:1500]}"


# -- seed data: ids the generated requests also name -------------------------------------


@dataclass(frozen=True)
class Seeded:
    resident_ids: list[int]
    device_ids: list[str]
    key_ids: list[int]
    body_ids: dict[str, list[Any]]  # request body fields naming records, and values that exist
    alert_ids: list[int] = field(default_factory=list)
    notice_ids: list[int] = field(default_factory=list)


RESIDENT: Final[dict[str, Any]] = {
    "name": "张建国",
    "birth_year": 1942,
    "service_needs": ["daily_check"],
    "tags": ["lives-alone"],
    "vital_limits": {"sbp_high": 170},
    "contacts": [{"name": "张小明", "relation": "儿子", "phone": "13800138000"}],
}


def seed_residents(api: Api) -> list[int]:
    """Two residents in grid A (building 3栋), one in grid B."""
    residents = []
    for grid in ("grid_a", "grid_a", "grid_b"):
        building = api.ids["building_a"] if grid == "grid_a" else None
        response = api.request(
            "admin",
            "POST",
            "/residents",
            json={**RESIDENT, "grid_id": api.ids[grid], "building_id": building},
        )
        assert response.status_code == 201, response.text
        residents.append(response.json()["id"])
    return residents


def seed_devices(api: Api, residents: list[int]) -> list[str]:
    """Three wristbands (two worn) and a bin in building 3栋."""
    devices = ["w0001", "w0002", "w0003", "b0001"]
    for device_id, grid in zip(devices, ("grid_a", "grid_a", "grid_b", "grid_a"), strict=True):
        response = api.request(
            "admin",
            "POST",
            "/devices",
            json={
                "id": device_id,
                "kind": "bin" if device_id.startswith("b") else "wristband",
                "grid_id": api.ids[grid],
                "interval_s": 60,
            },
        )
        assert response.status_code == 201, response.text
    for device_id, body in (
        ("w0001", {"resident_id": residents[0]}),
        ("w0003", {"resident_id": residents[2]}),
        ("b0001", {"building_id": api.ids["building_a"], "category": "kitchen"}),
    ):
        response = api.request("admin", "POST", f"/devices/{device_id}/bind", json=body)
        assert response.status_code == 200, response.text
    return devices


def seed_states(api: Api, now: int) -> None:
    """What the ingester would have recorded: one wristband online, one offline, the bin."""

    async def store() -> None:
        database = api.client.app.state.database  # type: ignore[attr-defined]
        async with database.sessions() as session:
            session.add_all(
                [
                    DeviceState(
                        device_id="w0001",
                        online=True,
                        last_seen_ms=now,
                        battery=80,
                        worn=True,
                        last_reading={"hr": 72},
                    ),
                    DeviceState(
                        device_id="w0002",
                        online=False,
                        last_seen_ms=now - 900_000,
                        battery=9,
                        worn=False,
                    ),
                    DeviceState(
                        device_id="b0001", online=True, last_seen_ms=now - 90_000, battery=50
                    ),
                ]
            )
            await session.commit()

    api.client.portal.call(store)  # type: ignore[union-attr]


def seed_body_ids(api: Api, residents: list[int]) -> dict[str, list[Any]]:
    """Values for request body fields naming records: ones that exist, and 2**63."""
    body_ids: dict[str, list[Any]] = {
        "grid_id": [api.ids["grid_a"], api.ids["grid_b"]],
        "community_id": [api.ids["community"], api.ids["other_community"]],
        "resident_id": list(residents),
        "building_id": [api.ids["building_a"]],
        "supervisor_id": [api.ids["zhao"]],
        "worker_ids": [[], [api.ids["wang"]], [api.ids["wang"], api.ids["li"]], [2**63]],
        # An area notice's area: places that exist, a tag the seeded residents carry.
        "grid_ids": [[api.ids["grid_a"]], [api.ids["grid_a"], api.ids["grid_b"]], [2**63]],
        "building_ids": [[api.ids["building_a"]], [2**63]],
        "tags": [["lives-alone"], ["low-lying", "lives-alone"]],
    }
    for name, pool in body_ids.items():
        if name not in ("worker_ids", "grid_ids", "building_ids", "tags"):
            pool.append(2**63)
    return body_ids


def seed(api: Api) -> Seeded:
    residents = seed_residents(api)
    devices = seed_devices(api, residents)
    response = api.request(
        "wang",
        "POST",
        f"/residents/{residents[0]}/visits",
        json={"need": "daily_check", "notes": "精神好", "readings": {"sbp": 135}},
    )
    assert response.status_code == 201, response.text
    keys = []
    for who in ("admin", "wang"):
        response = api.request(who, "POST", "/auth/api-keys", json={"name": f"{who}-key"})
        assert response.status_code == 201, response.text
        keys.append(response.json()["id"])
    now = int(time.time() * 1000)
    seed_states(api, now)
    alert_ids = seed_alerts(api, residents, now)
    response = api.request(
        "admin",
        "POST",
        "/notices",
        json={"title": "暴雨预警", "text": "请确认", "tags": ["lives-alone"]},
    )
    assert response.status_code == 201, response.text
    notice_ids = [response.json()["id"]]
    body_ids = seed_body_ids(api, residents)
    return Seeded(residents, devices, keys, body_ids, alert_ids, notice_ids)


def seed_alerts(api: Api, residents: list[int], now_ms: int) -> list[int]:
    """A fall and an SOS per resident (critical, so they notify at once), one more on a bin."""
    service = api.client.app.state.alerts  # type: ignore[attr-defined]
    findings = [
        Finding(
            rule=rule,
            subject_kind=SubjectKind.WRISTBAND,
            subject=f"w{resident:04d}",
            active=True,
            severity=Severity.CRITICAL,
            ts=now_ms,
            since=now_ms,
            resident_id=resident,
        )
        for resident in residents
        for rule in ("fall", "sos")
    ]
    findings.append(
        Finding(
            rule="bin_full",
            subject_kind=SubjectKind.BIN,
            subject="b0001",
            active=True,
            severity=Severity.WARNING,
            ts=now_ms,
            since=now_ms,
            grid_id=api.ids["grid_a"],
        )
    )
    api.client.portal.call(service.publish, findings)  # type: ignore[union-attr]
    listed = api.request("admin", "GET", "/alerts", params={"limit": 100}).json()
    assert listed["count"] == len(findings), listed
    return [a["id"] for a in listed["data"]]


def record_pins(op: Operation, names: set[str], seeded: Seeded) -> list[dict[str, Any]]:
    """Path parameters naming seeded records (and a valid whole binding)."""
    if op.path.endswith("/telemetry"):  # the last day: with a wristband worn, and without
        start = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        return [
            {"path_parameters": {"resident_id": rid}, "query": {"start": start}}
            for rid in seeded.resident_ids[:2]
        ]
    if "notice_id" in names:
        return [
            {"path_parameters": {"notice_id": nid, "resident_id": rid}}
            if "resident_id" in names
            else {"path_parameters": {"notice_id": nid}}
            for nid in seeded.notice_ids
            for rid in seeded.resident_ids
        ]
    if "alert_id" in names:
        return [{"path_parameters": {"alert_id": aid}} for aid in seeded.alert_ids]
    if "resident_id" in names:
        return [{"path_parameters": {"resident_id": rid}} for rid in seeded.resident_ids]
    if "device_id" in names:
        fixed: list[dict[str, Any]] = [
            {"path_parameters": {"device_id": did}} for did in seeded.device_ids
        ]
        if op.path.endswith("/bind"):  # a binding that is valid as a whole, too
            fixed.append(
                {
                    "path_parameters": {"device_id": "w0002"},
                    "body": {"resident_id": seeded.resident_ids[1]},
                }
            )
        return fixed
    if "key_id" in names:
        return [{"path_parameters": {"key_id": kid}} for kid in seeded.key_ids]
    return []


def pins(op: Operation, seeded: Seeded) -> list[dict[str, Any]]:
    """Fixed parts naming seeded records, or ids at integer limits; generation fills the rest."""
    names = {p.name for p in op.path_parameters}
    if op.label == "POST /api/v1/auth/token":
        return [{"body": {"username": "wang", "password": PASSWORD}}]
    fixed = record_pins(op, names, seeded)
    in_path = sorted(names & INTEGER_IDS)
    in_query = sorted({p.name for p in op.query} & INTEGER_IDS)
    for edge in EDGE_INTEGERS:
        pinned: dict[str, Any] = {}
        if in_path:
            pinned["path_parameters"] = dict.fromkeys(in_path, edge)
        if in_query:
            pinned["query"] = dict.fromkeys(in_query, edge)
        if pinned:
            fixed.append(pinned)
    return fixed


def drive(
    run: Run,
    op: Operation,
    mode: GenerationMode,
    examples: int,
    who: str,
    token: str,
    seeded: Seeded,
) -> None:
    strategy = st.one_of(
        [op.as_strategy(mode)] + [op.as_strategy(mode, **pinned) for pinned in pins(op, seeded)]
    )

    @given(case=strategy, data=st.data())
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: AnyCase, data: st.DataObject) -> None:
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            for name, pool in seeded.body_ids.items():  # name seeded records, now and then
                if name in case.body and data.draw(st.booleans()):
                    case.body[name] = data.draw(st.sampled_from(pool))
        run.send(case, who, token)

    try:
        fuzz()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        run.no_negative.append(f"{who} {op.label}")  # no input to make invalid


def ordered(operations: list[Operation]) -> list[Operation]:
    def key(op: Operation) -> tuple[int, str]:
        return (DESTRUCTIVE.index(op.label) + 1 if op.label in DESTRUCTIVE else 0, op.label)

    return sorted(operations, key=key)


def test_fuzz_the_whole_api(api: Api) -> None:
    openapi = api.client.app.openapi()  # type: ignore[attr-defined]
    schema = schemathesis.openapi.from_dict(patched_schema(openapi))
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operations.append(result.ok())
    operations = ordered(operations)
    assert len(operations) >= 31, [op.label for op in operations]
    seeded = seed(api)
    run = Run(api.client)
    started = time.monotonic()
    plan = (
        ("admin", POSITIVE_EXAMPLES, NEGATIVE_EXAMPLES),
        ("wang", WORKER_EXAMPLES, WORKER_EXAMPLES // 2),
    )
    for who, positive, negative in plan:
        token = api.token(who)
        for op in operations:
            if who == "admin" or op.label in WORKER_OPERATIONS:
                drive(run, op, GenerationMode.POSITIVE, positive, who, token, seeded)
                drive(run, op, GenerationMode.NEGATIVE, negative, who, token, seeded)
    elapsed = time.monotonic() - started

    total = sum(run.calls.values())
    answered = {label for (label, status), _ in run.statuses.items() if status < 300}
    never = sorted({op.label for op in operations} - answered)
    summary = (
        f"{total} calls over {len(run.calls)} (user, operation) pairs in {elapsed:.1f} s; "
        f"never 2xx: {never}; "
        f"no negative cases for: {len(run.no_negative)}"
    )
    print(summary)
    for op in operations:  # with `pytest -s`: what each operation answered
        answers = sorted(
            (status, n) for (label, status), n in run.statuses.items() if label == op.label
        )
        print(f"  {op.label:55} {answers}")
    assert not run.failures, summary + "\n\n" + "\n\n".join(run.failures.values())
    assert total >= MIN_CALLS, summary
    # Past the front door: all but a few operations answered 2xx at least once.
    assert len(never) <= 2, summary
