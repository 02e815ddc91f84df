"""The command line of `carewatch admin`: its actions and their options."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Final

from devices.access import Role

__all__ = ["ADMIN_PASSWORD_ENV", "add_arguments"]

ADMIN_PASSWORD_ENV: Final = "CAREWATCH_MQTT_ADMIN_PASSWORD"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the admin actions to a (sub)parser."""
    sub = parser.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    sub.add_parser("migrate", help="bring the registry database to the newest schema (Alembic)")
    _user_arguments(
        sub.add_parser("create-user", help="create a user who logs in (no login needed)")
    )
    residents = sub.add_parser("import-residents", help="residents (一人一档) from a CSV file")
    devices = sub.add_parser("import-devices", help="wristbands and bins from a CSV file")
    for command in (residents, devices):
        _import_arguments(command)
    _device_arguments(devices)


def _user_arguments(user: argparse.ArgumentParser) -> None:
    user.add_argument("--username", required=True)
    user.add_argument("--role", required=True, choices=[r.value for r in Role])
    user.add_argument("--full-name", metavar="NAME", help="shown in the app; default: username")
    user.add_argument(
        "--community", metavar="NAME", help="a supervisor's community (required for supervisors)"
    )
    user.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME",
        help="a grid of --community this grid worker serves (repeat for several)",
    )
    user.add_argument("--phone", help="mobile or landline, for escalations")
    user.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of prompting",
    )


def _import_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("file", type=Path, metavar="FILE.csv")
    command.add_argument(
        "--dry-run",
        action="store_true",
        help="check every row against (a copy of) the registry; write only the error report",
    )
    command.add_argument(
        "--encoding",
        default="utf-8",
        help="the file's encoding (default utf-8, with or without BOM; gb18030 for GBK files)",
    )


def _device_arguments(devices: argparse.ArgumentParser) -> None:
    devices.add_argument(
        "--credentials-out",
        type=Path,
        metavar="PATH",
        help="where to write device_id,password (default: FILE.credentials.csv next to FILE)",
    )
    devices.add_argument(
        "--broker-admin-url",
        metavar="URL",
        help="mqtt://carewatch-admin[:PASSWORD]@host:1883: add each device to the broker "
        "(dynamic security); default $CAREWATCH_MQTT_ADMIN_URL; without a password in it, "
        f"${ADMIN_PASSWORD_ENV} gives it",
    )
