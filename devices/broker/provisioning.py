"""Device MQTT credentials on a running broker, through Mosquitto's dynamic security plugin.

Every aiomqtt call of the registry lives here; how it works: docs/registry.md (broker provisioning).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self

import aiomqtt

from core.settings import MqttTarget
from devices.broker.dynsec_bootstrap import (
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    check_device_id,
    device_acls,
    device_role,
)
from devices.exceptions import DynsecConfigError, ProvisioningError

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "BrokerProvisioner",
    "DynsecProvisioner",
    "ProvisioningError",
]

log = logging.getLogger(__name__)

# mosquitto/README.md asks for at least 16 random characters per device.
MIN_PASSWORD_LENGTH: Final = 16
_SEE: Final = "see mosquitto/README.md"

# Answers the plugin gives when the state asked for is already there
# (Mosquitto 2.0.11's wording); anything else is a failure.
_ROLE_EXISTS: Final = "Role already exists"
_CLIENT_EXISTS: Final = "Client already exists"
_CLIENT_NOT_FOUND: Final = "Client not found"
_ACL_EXISTS: Final = "ACL with this topic already exists"


class BrokerProvisioner(Protocol):
    """Creates, locks out and restores a device's MQTT credentials on the broker."""

    async def add_device(self, device_id: str, password: str) -> None:
        """Let the device log in with this password (creates it, or replaces its password)."""
        ...

    async def revoke_device(self, device_id: str) -> None:
        """Refuse the device's new connections and drop a live one; unknown ids are fine."""
        ...

    async def restore_device(self, device_id: str, password: str) -> None:
        """Let a revoked device log in again, with a new password."""
        ...


@dataclass(frozen=True, slots=True)
class _Reply:
    """The plugin's answer to one command: its name and error text, None on success."""

    command: str
    error: str | None


class DynsecProvisioner:
    """BrokerProvisioner over MQTT: commands to Mosquitto's dynamic security plugin.

    Each call opens its own connection unless the provisioner is used as an
    async context manager, which keeps one open for many calls (bulk imports).
    """

    def __init__(
        self,
        target: MqttTarget,
        *,
        timeout: float = 10.0,
        min_password_length: int = MIN_PASSWORD_LENGTH,
    ) -> None:
        if not target.username or not target.password:
            msg = (
                "the broker admin target needs a username and password "
                f"(mqtt://carewatch-admin:PASSWORD@{target.host}:{target.port}): {_SEE}"
            )
            raise ProvisioningError(msg)
        self._target = target
        self._timeout = timeout
        # Lowered only by test harnesses that reuse short fixed passwords.
        self._min_password_length = min_password_length
        self._lock = asyncio.Lock()
        self._session: AsyncExitStack | None = None
        self._client: aiomqtt.Client | None = None
        self._keep_open = False

    async def __aenter__(self) -> Self:
        self._keep_open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._keep_open = False
        async with self._lock:
            await self._close()

    # --- the protocol -------------------------------------------------------

    async def add_device(self, device_id: str, password: str) -> None:
        """Create the device's client and role, or update both and its password; enable it."""
        _check(device_id, password, self._min_password_length)
        role = device_role(device_id)
        role_reply, client_reply = await self._run(
            [
                {"command": "createRole", "rolename": role, "acls": device_acls(device_id)},
                {
                    "command": "createClient",
                    "username": device_id,
                    "password": password,
                    "roles": [{"rolename": role}],
                },
            ],
            device_id,
        )
        _expect(role_reply, device_id, _ROLE_EXISTS)
        _expect(client_reply, device_id, _CLIENT_EXISTS)
        if role_reply.error == _ROLE_EXISTS:
            # A role left by an earlier add may lack an ACL (edited by hand, or
            # from an older version of this module): put back what is missing.
            for reply in await self._run(
                [
                    {"command": "addRoleACL", "rolename": role, **acl}
                    for acl in device_acls(device_id)
                ],
                device_id,
            ):
                _expect(reply, device_id, _ACL_EXISTS)
        if client_reply.error == _CLIENT_EXISTS:
            await self._update(device_id, password)
        log.info("provisioned MQTT client %s", device_id)

    async def revoke_device(self, device_id: str) -> None:
        """Disable the device's client: the broker refuses it and kicks a live connection."""
        _check_id(device_id)
        (reply,) = await self._run([{"command": "disableClient", "username": device_id}], device_id)
        _expect(reply, device_id, _CLIENT_NOT_FOUND)
        log.info("revoked MQTT client %s", device_id)

    async def restore_device(self, device_id: str, password: str) -> None:
        """Set the new password and enable the client (recreated if the broker lost it)."""
        # add_device already ends in exactly this state from any starting point.
        await self.add_device(device_id, password)

    # --- commands -----------------------------------------------------------

    async def _update(self, device_id: str, password: str) -> None:
        # modifyClient sets the password and exactly the device's own role in one
        # step (addClientRole answers "Internal error" when the role is already
        # there); the broker drops a connection still using the old password.
        # The enable comes after it, so the old password never works again.
        replies = await self._run(
            [
                {
                    "command": "modifyClient",
                    "username": device_id,
                    "password": password,
                    "roles": [{"rolename": device_role(device_id)}],
                },
                {"command": "enableClient", "username": device_id},
            ],
            device_id,
        )
        for reply in replies:
            _expect(reply, device_id, None)

    async def _run(self, commands: list[dict[str, Any]], device_id: str) -> list[_Reply]:
        """Send the commands as one message; return their replies in order."""
        async with self._lock:
            try:
                if self._keep_open:
                    if self._client is None:
                        await self._open()
                    assert self._client is not None
                    return await self._exchange(self._client, commands, device_id)
                async with self._connection() as client:
                    return await self._exchange(client, commands, device_id)
            except ProvisioningError:
                await self._close()
                raise
            except aiomqtt.MqttError as exc:
                await self._close()
                msg = (
                    f"lost the connection to the MQTT broker at {self._where} while "
                    f"provisioning {device_id!r} ({exc}): retry; the commands are idempotent"
                )
                raise ProvisioningError(msg) from exc

    async def _exchange(
        self, client: aiomqtt.Client, commands: list[dict[str, Any]], device_id: str
    ) -> list[_Reply]:
        batch = uuid.uuid4().hex
        # Every admin connection sees every response: the correlation data
        # tells ours apart from those of other API workers or mosquitto_ctrl.
        tagged = [{**cmd, "correlationData": f"{batch}:{i}"} for i, cmd in enumerate(commands)]
        try:
            async with asyncio.timeout(self._timeout):
                # QoS 0 on purpose: with QoS 1 the broker writes its PUBACK and then
                # the answer as two small segments, and Nagle (mosquitto's
                # set_tcp_nodelay is off by default) holds the answer until our
                # delayed ACK, about 40 ms a command (seen: 200 devices in 8.8 s
                # instead of 0.3 s). A lost command ends in the timeout below,
                # and every command here is safe to send again.
                await client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=0)
                async for message in client.messages:
                    replies = _parse_response(message.payload, batch, len(commands))
                    if replies is not None:
                        return replies
        except TimeoutError:
            msg = (
                f"no answer on {CONTROL_TOPIC} from the broker at {self._where} within "
                f"{self._timeout:g} s: either it has no dynamic security plugin loaded, or "
                f"account {self._target.username!r} lacks the admin role; {_SEE}"
            )
            raise ProvisioningError(msg) from None
        msg = f"the broker at {self._where} closed the connection while provisioning {device_id!r}"
        raise ProvisioningError(msg)

    # --- connection ---------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self._target.host}:{self._target.port}"

    async def _open(self) -> None:
        stack = AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(self._connection())
        except BaseException:
            await stack.aclose()
            raise
        self._session = stack

    async def _close(self) -> None:
        session, self._session, self._client = self._session, None, None
        if session is not None:
            try:
                await session.aclose()
            except aiomqtt.MqttError as exc:
                # The connection is gone either way; nothing left to release.
                log.debug("closing the dynsec admin connection: %s", exc)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[aiomqtt.Client]:
        target = self._target
        client = aiomqtt.Client(
            target.host,
            target.port,
            username=target.username,
            password=target.password,
            identifier=f"carewatch-provisioner-{uuid.uuid4().hex[:12]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=ssl.create_default_context() if target.tls else None,
            timeout=self._timeout,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttCodeError as exc:
            msg = (
                f"the broker at {self._where} refused account {target.username!r} ({exc}): "
                "check its password, and that the broker loads the dynamic security plugin "
                f"whose config holds that account; {_SEE}"
            )
            raise ProvisioningError(msg) from exc
        except aiomqtt.MqttError as exc:
            msg = f"cannot reach the MQTT broker at {self._where} ({exc}): is it running there?"
            raise ProvisioningError(msg) from exc
        try:
            granted = await client.subscribe(RESPONSE_TOPIC, qos=1)
            if any(getattr(code, "is_failure", False) for code in granted):
                msg = (
                    f"account {target.username!r} may not subscribe to {RESPONSE_TOPIC}: "
                    f"give it the admin role (devices/broker/dynsec_bootstrap.py); {_SEE}"
                )
                raise ProvisioningError(msg)
            yield client
        finally:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError as exc:
                log.debug("disconnecting the dynsec admin connection: %s", exc)


def _check_id(device_id: str) -> None:
    try:
        check_device_id(device_id)
    except DynsecConfigError as exc:
        raise ProvisioningError(str(exc)) from None


def _check(device_id: str, password: str, min_length: int) -> None:
    _check_id(device_id)
    if len(password) < max(min_length, 1):
        msg = (
            f"the password for {device_id!r} has {len(password)} characters: use at least "
            f"{max(min_length, 1)} random ones, e.g. secrets.token_urlsafe(18)"
        )
        raise ProvisioningError(msg)


def _expect(reply: _Reply, device_id: str, tolerated: str | None) -> None:
    """Raise ProvisioningError unless the command succeeded or failed with `tolerated`."""
    if reply.error is None or reply.error == tolerated:
        return
    msg = f"the broker refused {reply.command} for device {device_id!r}: {reply.error}"
    raise ProvisioningError(msg)


def _parse_response(payload: object, batch: str, expected: int) -> list[_Reply] | None:
    """Our batch's replies in command order, or None when the message answers someone else."""
    if not isinstance(payload, bytes | bytearray | str):
        return None
    try:
        document = json.loads(payload)
    except ValueError:
        return None
    responses = document.get("responses") if isinstance(document, dict) else None
    if not isinstance(responses, list):
        return None
    replies: dict[int, _Reply] = {}
    for item in responses:
        if not isinstance(item, dict):
            continue
        tag = str(item.get("correlationData", ""))
        owner, _, index = tag.partition(":")
        if owner != batch or not index.isdigit():
            continue
        error = item.get("error")
        replies[int(index)] = _Reply(
            command=str(item.get("command", "?")),
            error=str(error) if error is not None else None,
        )
    if not replies:
        return None
    if sorted(replies) != list(range(expected)):
        msg = f"the broker answered {len(replies)} of {expected} dynsec commands: {_SEE}"
        raise ProvisioningError(msg)
    return [replies[i] for i in range(expected)]
