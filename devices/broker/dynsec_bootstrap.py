"""The dynamic-security plugin's config file: accounts, roles and ACLs the broker starts with.

Written only while the broker is stopped; see docs/registry.md (the dynsec bootstrap).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from devices.exceptions import DynsecConfigError
from protocol.topics import DEVICE_ID_RE

__all__ = [
    "ADMIN_ROLE",
    "ADMIN_USER",
    "CONTROL_TOPIC",
    "LOADGEN_ROLE",
    "LOADGEN_USER",
    "RESERVED_USERNAMES",
    "RESPONSE_TOPIC",
    "SERVICE_ROLE",
    "SERVICE_USER",
    "DynsecConfigError",
    "build_config",
    "check_device_id",
    "device_acls",
    "device_role",
    "find_plugin",
    "hash_password",
    "main",
    "write_config",
]

CONTROL_TOPIC: Final = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC: Final = "$CONTROL/dynamic-security/v1/response"

ADMIN_USER: Final = "carewatch-admin"
SERVICE_USER: Final = "carewatch"
LOADGEN_USER: Final = "loadgen"
RESERVED_USERNAMES: Final = frozenset({ADMIN_USER, SERVICE_USER, LOADGEN_USER})

# Role names contain a character a device id cannot, so no device role can
# collide with an account's role whatever ids the registry hands out.
ADMIN_ROLE: Final = "cw:admin"
SERVICE_ROLE: Final = "cw:service"
LOADGEN_ROLE: Final = "cw:loadgen"
_DEVICE_ROLE_PREFIX: Final = "cw:device:"

# What the plugin itself uses for passwords set over $CONTROL (seen in files
# Mosquitto 2.0.11 wrote): PBKDF2-HMAC-SHA512, 12-byte salt, 101 iterations.
_ITERATIONS: Final = 101
_SALT_BYTES: Final = 12

# Deny by default, as `mosquitto_ctrl dynsec init` writes it; a client may
# receive whatever it was allowed to subscribe to, and always unsubscribe.
_DEFAULT_ACL_ACCESS: Final = {
    "publishClientSend": False,
    "publishClientReceive": True,
    "subscribe": False,
    "unsubscribe": True,
}

_PLUGIN_NAME: Final = "mosquitto_dynamic_security.so"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def check_device_id(device_id: str) -> None:
    """Raise DynsecConfigError unless `device_id` is a protocol v1 id and no reserved account."""
    if not DEVICE_ID_RE.fullmatch(device_id):
        msg = f"device id {device_id[:80]!r} is not 1 to 64 of A-Z a-z 0-9 _ - (protocol v1)"
        raise DynsecConfigError(msg)
    if device_id in RESERVED_USERNAMES:
        msg = f"{device_id!r} is a reserved account name; give the device another id"
        raise DynsecConfigError(msg)


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """A device's ACLs: publish and subscribe only under `cw/v1/+/<device_id>/#`."""
    # Mosquitto 2.0.11's dynsec does not substitute %u in ACL topics (seen: a
    # shared `cw/v1/+/%u/#` role denied a device its own topic), hence one role
    # per device with the id written in.
    own = f"cw/v1/+/{device_id}/#"
    return [_acl("publishClientSend", own), _acl("subscribePattern", own)]


def device_role(device_id: str) -> str:
    """The name of the role that holds one device's ACLs."""
    return _DEVICE_ROLE_PREFIX + device_id


def _admin_acls() -> list[dict[str, Any]]:
    # Only the control topics: the admin account cannot read or forge telemetry.
    control = "$CONTROL/dynamic-security/#"
    return [
        _acl("publishClientSend", control),
        _acl("publishClientReceive", control),
        _acl("subscribePattern", control),
    ]


def _service_acls() -> list[dict[str, Any]]:
    # Mosquitto 2.0.11 checks a shared subscription's full filter against the
    # ACL (seen: `$share/g/cw/v1/#` refused by `cw/v1/#` alone), so the
    # $share form is granted explicitly for CAREWATCH_MQTT_SHARE_GROUP.
    return [
        _acl("subscribePattern", "cw/v1/#"),
        _acl("subscribePattern", "$share/+/cw/v1/#"),
        _acl("publishClientSend", "cw/v1/deadletter"),
    ]


def _loadgen_acls() -> list[dict[str, Any]]:
    # Dev only: it can impersonate every device.
    return [
        _acl("publishClientSend", "cw/v1/#"),
        _acl("subscribePattern", "cw/v1/#"),
        _acl("subscribePattern", "$share/+/cw/v1/#"),
    ]


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The `password`, `salt` and `iterations` fields of a dynsec client (PBKDF2-SHA512)."""
    if not password:
        msg = "an empty password is not allowed by the dynamic security plugin"
        raise DynsecConfigError(msg)
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, _ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode("ascii"),
        "salt": base64.b64encode(salt).decode("ascii"),
        "iterations": _ITERATIONS,
    }


def _client(username: str, password: str, role: str) -> dict[str, Any]:
    return {"username": username, "roles": [{"rolename": role}], **hash_password(password)}


def build_config(
    *,
    admin_password: str,
    service_password: str,
    loadgen_password: str | None = None,
    devices: Iterable[tuple[str, str]] = (),
) -> dict[str, Any]:
    """A fresh config: the admin and service accounts, `loadgen` if given, and devices."""
    clients = [
        _client(ADMIN_USER, admin_password, ADMIN_ROLE),
        _client(SERVICE_USER, service_password, SERVICE_ROLE),
    ]
    roles = [
        {"rolename": ADMIN_ROLE, "acls": _admin_acls()},
        {"rolename": SERVICE_ROLE, "acls": _service_acls()},
    ]
    if loadgen_password is not None:
        clients.append(_client(LOADGEN_USER, loadgen_password, LOADGEN_ROLE))
        roles.append({"rolename": LOADGEN_ROLE, "acls": _loadgen_acls()})
    for device_id, password in devices:
        check_device_id(device_id)
        clients.append(_client(device_id, password, device_role(device_id)))
        roles.append({"rolename": device_role(device_id), "acls": device_acls(device_id)})
    return {
        "defaultACLAccess": dict(_DEFAULT_ACL_ACCESS),
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def _merge(existing: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """`existing` with the clients and roles of `fresh` in place of same-named ones."""
    owned_clients = {c["username"] for c in fresh["clients"]} | {LOADGEN_USER}
    owned_roles = {r["rolename"] for r in fresh["roles"]} | {LOADGEN_ROLE}
    merged = dict(existing)
    merged["clients"] = [
        c for c in existing.get("clients", []) if c.get("username") not in owned_clients
    ] + fresh["clients"]
    merged["roles"] = [
        r for r in existing.get("roles", []) if r.get("rolename") not in owned_roles
    ] + fresh["roles"]
    merged.setdefault("groups", [])
    merged.setdefault("defaultACLAccess", fresh["defaultACLAccess"])
    return merged


def write_config(
    path: Path,
    *,
    admin_password: str,
    service_password: str,
    loadgen_password: str | None = None,
    devices: Iterable[tuple[str, str]] = (),
    owner: tuple[int, int] | None = None,
) -> Path:
    """Create or update the config file (mode 0600, atomically); keeps runtime-provisioned devices.

    Run it only while the broker is stopped: a running broker overwrites the
    file with its own state on its next change. `owner` (uid, gid) is for
    root-run init containers: the broker's own user must be able to rewrite it.
    """
    fresh = build_config(
        admin_password=admin_password,
        service_password=service_password,
        loadgen_password=loadgen_password,
        devices=devices,
    )
    config = fresh
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            msg = f"cannot read the existing dynsec config {path} ({exc}): fix or remove it"
            raise DynsecConfigError(msg) from exc
        if not isinstance(existing, dict):
            msg = f"{path} is not a dynamic-security config (no JSON object): fix or remove it"
            raise DynsecConfigError(msg)
        config = _merge(existing, fresh)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only from the first byte: the file holds password hashes.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(config, out, indent=1)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        if owner is not None:
            os.chown(tmp, *owner)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        msg = f"cannot write the dynsec config {path}: {exc}"
        raise DynsecConfigError(msg) from exc
    return path


def find_plugin() -> Path:
    """The dynamic-security plugin shipped with Debian's (or the image's) mosquitto."""
    candidates = [
        *sorted(Path("/usr/lib").glob(f"*/{_PLUGIN_NAME}")),
        Path("/usr/lib") / _PLUGIN_NAME,
        Path("/usr/local/lib") / _PLUGIN_NAME,
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    msg = f"{_PLUGIN_NAME} not found under /usr/lib: install Debian's mosquitto package (2.0+)"
    raise DynsecConfigError(msg)


def _parse_devices(text: str) -> list[tuple[str, str]]:
    devices: list[tuple[str, str]] = []
    for entry in text.split():
        device_id, sep, password = entry.partition(":")
        if not sep or not password:
            msg = f"MQTT_DEV_DEVICES entry {entry[:80]!r} is not device_id:password"
            raise DynsecConfigError(msg)
        devices.append((device_id, password))
    return devices


def _parse_owner(text: str) -> tuple[int, int]:
    uid, sep, gid = text.partition(":")
    if not (uid.isdigit() and sep and gid.isdigit()):
        msg = f"--owner wants numeric uid:gid such as 1883:1883, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return int(uid), int(gid)


def main(argv: Sequence[str] | None = None) -> int:
    """Write or update the config file from environment variables; 0 on success."""
    parser = argparse.ArgumentParser(
        prog="python -m devices.broker.dynsec_bootstrap",
        description="Write Mosquitto's dynamic-security config (run while the broker is stopped).",
    )
    parser.add_argument("path", type=Path, help="plugin_opt_config_file of the broker")
    parser.add_argument("--owner", type=_parse_owner, help="uid:gid the broker runs as")
    args = parser.parse_args(argv)
    env = os.environ
    try:
        needed = {
            "CAREWATCH_MQTT_ADMIN_PASSWORD": ADMIN_USER,
            "CAREWATCH_MQTT_PASSWORD": SERVICE_USER,
        }
        missing = [f"{name} (for {user})" for name, user in needed.items() if not env.get(name)]
        if missing:
            msg = f"set {' and '.join(missing)}"
            raise DynsecConfigError(msg)
        path = write_config(
            args.path,
            admin_password=env["CAREWATCH_MQTT_ADMIN_PASSWORD"],
            service_password=env["CAREWATCH_MQTT_PASSWORD"],
            loadgen_password=env.get("LOADGEN_MQTT_PASSWORD") or None,
            devices=_parse_devices(env.get("MQTT_DEV_DEVICES", "")),
            owner=args.owner,
        )
    except DynsecConfigError as exc:
        print(f"dynsec_bootstrap: {exc}", file=sys.stderr)
        return 1
    print(f"dynsec_bootstrap: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
