"""What the root builds of the registry: the broker provisioner its settings ask for."""

from __future__ import annotations

from core.settings import MqttTarget, Settings
from devices.broker.provisioning import BrokerProvisioner, DynsecProvisioner
from devices.exceptions import ProvisioningError

__all__ = ["NoBroker", "provisioner_for"]


class NoBroker:
    """The provisioner when CAREWATCH_MQTT_ADMIN_URL is unset: says so instead of pretending."""

    async def _refuse(self, device_id: str) -> None:
        msg = (
            f"device {device_id}: CAREWATCH_MQTT_ADMIN_URL is not set, so the broker was not "
            "updated; add the credentials by hand (mosquitto/README.md) or set it"
        )
        raise ProvisioningError(msg)

    async def add_device(self, device_id: str, password: str) -> None:
        """Refuse: there is no broker to add the device to."""
        await self._refuse(device_id)

    async def revoke_device(self, device_id: str) -> None:
        """Refuse: there is no broker to revoke the device on."""
        await self._refuse(device_id)

    async def restore_device(self, device_id: str, password: str) -> None:
        """Refuse: there is no broker to restore the device on."""
        await self._refuse(device_id)


def provisioner_for(settings: Settings) -> BrokerProvisioner:
    """The broker's dynamic security plugin when an admin URL is set, else `NoBroker`."""
    if settings.mqtt_admin_url:
        return DynsecProvisioner(MqttTarget.from_url(settings.mqtt_admin_url))
    return NoBroker()
