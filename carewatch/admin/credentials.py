"""Device passwords for an import: the broker to add them to, and the file that shows them once."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from carewatch.admin.arguments import ADMIN_PASSWORD_ENV
from carewatch.admin.common import EXIT_UNUSABLE, Refused
from core.settings import MqttTarget
from devices.broker.provisioning import BrokerProvisioner, DynsecProvisioner
from devices.exceptions import ProvisioningError

__all__ = ["Credentials", "dynsec"]


class Credentials:
    """device_id,password lines (mode 0600), appended and flushed as each device is made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._new = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file, lineterminator="\n")
        if os.fstat(fd).st_size == 0:
            self._csv.writerow(["device_id", "password"])

    def add(self, device_id: str, password: str) -> None:
        """Write one device's password, on disk before the next device is made."""
        self._csv.writerow([device_id, password])
        self._file.flush()
        os.fsync(self._file.fileno())
        self.written += 1

    def close(self) -> None:
        """Close the file; remove it when this run created it and wrote nothing."""
        self._file.close()
        if self._new and self.written == 0:
            self.path.unlink(missing_ok=True)


def dynsec(url: str) -> BrokerProvisioner:
    """The broker's dynamic security, as the admin account of `url` (password from the env)."""
    if not url.startswith(("mqtt://", "mqtts://")):
        raise Refused(
            "--broker-admin-url 应形如 mqtt://carewatch-admin@127.0.0.1:1883",
            "--broker-admin-url must look like mqtt://carewatch-admin@127.0.0.1:1883",
            EXIT_UNUSABLE,
        )
    target = MqttTarget.from_url(url)
    if target.password is None and os.environ.get(ADMIN_PASSWORD_ENV):
        target = target.model_copy(update={"password": os.environ[ADMIN_PASSWORD_ENV]})
    try:
        return DynsecProvisioner(target)
    except ProvisioningError as exc:
        raise Refused(f"消息代理配置有误：{exc}", str(exc), EXIT_UNUSABLE) from None
