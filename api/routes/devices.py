"""Devices: registration with MQTT credentials, binding, revocation, and their status."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from api.deps import AdminScope, ProvisionerDep, ScopeDep, SessionDep
from api.errors import ApiError
from api.schemas.common import ERRORS, Offset, Page, QueryId
from api.schemas.devices import (
    BindRequest,
    DeviceCreate,
    DeviceCredentials,
    DevicePublic,
    DeviceStatusPublic,
)
from api.schemas.residents import BindingPublic
from core.secrets import new_device_password
from devices import bindings as device_bindings
from devices import status as device_states
from devices.broker.provisioning import ProvisioningError
from devices.constants import LOW_BATTERY

log = logging.getLogger(__name__)
_RESPONSES: dict[int | str, dict[str, Any]] = {k: ERRORS[k] for k in (400, 401, 403, 404, 409, 422)}
device_router = APIRouter(prefix="/devices", tags=["devices"], responses=_RESPONSES)
status_router = APIRouter(prefix="/status", tags=["devices"], responses=_RESPONSES)
StateFilter = Literal["offline", "silent", "low_battery", "not_worn", "online"]


async def _credentials(
    provisioner: ProvisionerDep, device_id: str, kind: str, *, restore: bool = False
) -> DeviceCredentials:
    password = new_device_password()
    try:
        if restore:
            await provisioner.restore_device(device_id, password)
        else:
            await provisioner.add_device(device_id, password)
        updated = True
    except ProvisioningError as exc:
        # The registry keeps the device; an operator re-issues credentials once the broker answers.
        log.error("broker not updated for %s: %s", device_id, exc)
        updated = False
    return DeviceCredentials(
        device_id=device_id,
        mqtt_username=device_id,
        mqtt_password=password,
        topics=f"cw/v1/{kind}/{device_id}/#",
        broker_updated=updated,
    )


@device_router.post(
    "", status_code=201, summary="Register a device; its MQTT password is shown once"
)
async def register_device(
    body: DeviceCreate, scope: AdminScope, session: SessionDep, provisioner: ProvisionerDep
) -> DeviceCredentials:
    device = await device_bindings.register_device(
        session,
        scope,
        device_id=body.id,
        kind=body.kind,
        grid_id=body.grid_id,
        interval_s=body.interval_s,
    )
    return await _credentials(provisioner, device.id, device.kind)


@device_router.get("/{device_id}", summary="One device")
async def get_device(device_id: str, scope: ScopeDep, session: SessionDep) -> DevicePublic:
    return DevicePublic.model_validate(await device_bindings.get_device(session, scope, device_id))


@device_router.post(
    "/{device_id}/bind", summary="Bind a wristband to a resident or a bin to a building"
)
async def bind_device(
    device_id: str, body: BindRequest, scope: ScopeDep, session: SessionDep
) -> BindingPublic:
    binding = await device_bindings.bind_device(session, scope, device_id, **body.model_dump())
    return BindingPublic.model_validate(binding)


@device_router.get("/{device_id}/bindings", summary="Who or where a device served, over time")
async def bindings(device_id: str, scope: ScopeDep, session: SessionDep) -> list[BindingPublic]:
    rows = await device_bindings.bindings_of_device(session, scope, device_id)
    return [BindingPublic.model_validate(b) for b in rows]


@device_router.post("/{device_id}/revoke", summary="Lock a device out of the broker (admin)")
async def revoke_device(
    device_id: str, scope: AdminScope, session: SessionDep, provisioner: ProvisionerDep
) -> DevicePublic:
    device = await device_bindings.set_revoked(session, scope, device_id, True)
    try:
        await provisioner.revoke_device(device.id)
    except ProvisioningError as exc:
        raise ApiError(
            502,
            "broker_not_updated",
            "设备已在登记系统中停用，但消息服务器未更新，请稍后重试",
            f"revoked in the registry, but the broker was not updated: {exc}; try again",
        ) from exc
    return DevicePublic.model_validate(device)


@device_router.post(
    "/{device_id}/restore", summary="Re-admit a device with new credentials (admin)"
)
async def restore_device(
    device_id: str, scope: AdminScope, session: SessionDep, provisioner: ProvisionerDep
) -> DeviceCredentials:
    device = await device_bindings.set_revoked(session, scope, device_id, False)
    return await _credentials(provisioner, device.id, device.kind, restore=True)


def _status_public(row: device_states.StatusRow) -> DeviceStatusPublic:
    st = row.state
    last_seen = st.last_seen_ms if st is not None else None
    return DeviceStatusPublic(
        device_id=row.device.id,
        kind=row.device.kind,
        grid_id=row.device.grid_id,
        community_id=row.community_id,
        online=not row.offline,
        silent=row.silent,
        status=None if st is None or st.online is None else ("online" if st.online else "offline"),
        last_seen=datetime.fromtimestamp(last_seen / 1000, UTC) if last_seen else None,
        battery=st.battery if st is not None else None,
        worn=st.worn if st is not None else None,
        low_battery=bool(st is not None and st.battery is not None and st.battery < LOW_BATTERY),
        last_reading=(st.last_reading or {}) if st is not None else {},
    )


@status_router.get(
    "/devices", summary="Device status for supervisors: offline, low battery, not worn"
)
async def device_status(
    scope: ScopeDep,
    session: SessionDep,
    grid_id: QueryId = None,
    community_id: QueryId = None,
    kind: Literal["wristband", "bin"] | None = None,
    state: StateFilter | None = None,
    offset: Offset = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Page[DeviceStatusPublic]:
    """Served from the state the ingester keeps in the registry, never from InfluxDB.

    Offline: the status topic says so, or silent for three reporting intervals.
    """
    rows, count = await device_states.device_status(
        session,
        scope,
        now_ms=int(time.time() * 1000),
        grid_id=grid_id,
        community_id=community_id,
        kind=kind,
        state=state,
        offset=offset,
        limit=limit,
    )
    return Page(data=[_status_public(row) for row in rows], count=count)


# main.py includes `router`: both prefixed routers, the URLs as before.
router = APIRouter()
router.include_router(device_router)
router.include_router(status_router)
