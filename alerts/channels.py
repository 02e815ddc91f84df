"""Notification channels: the one way the dispatcher sends, any apprise URL, failures made visible.

apprise reports a failed service as a bare False and swallows plugin exceptions;
`Channels.send` turns its per-service result and the warnings captured during the
attempt into a `Delivery`: whether it went, whether trying again could help, and a
detail for the alert's timeline. Retrying and falling back are the dispatcher's.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote, urlsplit

import apprise
from apprise.manager_plugins import NotificationManager
from apprise.result import AppriseResult, AppriseResultStatus

from alerts.exceptions import ChannelTemplateError
from alerts.sms.aliyun import NotifyAliyunSMS
from alerts.sms.tencent import NotifyTencentSMS
from core.phones import mask_phone

__all__ = [
    "ChannelTemplateError",
    "Channels",
    "Delivery",
    "channel_url",
    "check_url",
    "redact",
    "register_plugins",
]

log = logging.getLogger(__name__)

PLUGINS: Final = (NotifyAliyunSMS, NotifyTencentSMS)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DETAIL_MAX: Final = 500
_MIN_CREDENTIAL: Final = 6
_LOUD: Final = frozenset({"WARNING", "ERROR", "CRITICAL"})


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one send: delivered or not, and a detail for the timeline (no secrets).

    `recoverable` (of a failure): whether the same channel may work if tried again (a
    timeout, a 5xx, a rate limit), or never will (a URL apprise refuses, a number or a
    template the provider rejects), when only the person's next channel can help.
    """

    ok: bool
    detail: str
    recoverable: bool = True


def _registry() -> NotificationManager:
    """apprise's plugin registry (a process-wide singleton)."""
    return NotificationManager()  # type: ignore[no-untyped-call]


def register_plugins() -> None:
    """Put the Aliyun and Tencent SMS plugins into apprise's registry (once; safe to repeat)."""
    registry = _registry()
    for plugin in PLUGINS:
        if plugin.secure_protocol in registry and registry[plugin.secure_protocol] is plugin:
            continue
        # force: a re-imported module (tests, reloads) brings a new class for the same scheme
        registry.add(plugin=plugin, schemas=plugin.secure_protocol, force=True)  # type: ignore[no-untyped-call]


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].strip().lower() if "://" in url else ""


def _secrets(url: str) -> list[str]:
    """The parts of a URL that may be keys or tokens, longest first, to be blanked in details."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: set[str] = set()
    for credential in (parts.username, parts.password):
        # too short to be a real key, and blanking it would shred ordinary words
        if credential and len(unquote(credential)) >= _MIN_CREDENTIAL:
            found.add(unquote(credential))
    # keys also live in the host (wecombot://KEY, schan://SENDKEY), the path and the query
    candidates = [parts.netloc.rpartition("@")[2], *parts.path.split("/")]
    candidates += [v for pair in parts.query.split("&") for v in pair.split("=")[1:]]
    for raw in candidates:
        value = unquote(raw)
        # hostnames and addresses (dots, colons) and short words stay readable
        if len(value) >= 8 and not re.fullmatch(r"[\w.-]*\.[\w.-]*(:\d+)?|[\d.:]+", value):
            found.add(value)
    expanded = found | {quote(v, safe="") for v in found}
    return sorted((s for s in expanded if s), key=len, reverse=True)


def redact(text: str, url: str) -> str:
    """`text` without the URL's keys and tokens, mainland mobile numbers masked."""
    for secret in _secrets(url):
        text = text.replace(secret, "****")
    return mask_phone(text)


def check_url(url: str) -> str | None:
    """Why apprise would refuse this channel URL, or None when it accepts it."""
    register_plugins()
    scheme = _scheme(url)
    if not scheme:
        return "not a channel URL: expected scheme://..."
    try:
        service = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    except Exception as exc:  # apprise plugins raise TypeError, ValueError and their own kinds
        reason = redact(str(exc), url) or type(exc).__name__
        return f"apprise does not accept this URL: {scheme}: {reason}"
    if service is None:
        known = scheme in _registry()
        why = "unreadable URL" if known else "unknown scheme"
        return f"apprise does not accept this URL: {scheme} ({why})"
    return None


def channel_url(template: str, **values: str) -> str:
    """Fill `{phone}`, `{wechat}`... in an operator's URL template, each value percent-encoded.

    `aliyunsms://KEY:SECRET@签名/SMS_123/{phone}` with `phone="13800138000"`. A
    placeholder without a (non-empty) value raises ChannelTemplateError: sending to
    a literal `{wechat}` would reach nobody, or the wrong somebody.
    """

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = values.get(name)
        if not value:
            msg = f"channel URL template needs {{{name}}}, which this person does not have"
            raise ChannelTemplateError(msg)
        return quote(value.strip(), safe="")

    return _PLACEHOLDER.sub(fill, template)


class Channels:
    """Sends one message through one apprise URL and says precisely how it went.

    `timeout` bounds a whole send; each HTTP call inside also has apprise's own
    connect/read timeouts (4 s each, `?cto=`/`?rto=` in the URL change them). A
    fresh `Apprise` per send: the URLs differ per person and parsing one is cheap.
    """

    def __init__(self, timeout: float = 10.0) -> None:
        register_plugins()
        self.timeout = timeout

    async def send(self, url: str, title: str, body: str) -> Delivery:
        """Deliver `title` and `body` through `url`; never raises for a channel's failure."""
        sender = apprise.Apprise()
        if not sender.add(url):
            reason = check_url(url) or f"apprise does not accept this URL: {_scheme(url)}"
            return Delivery(False, reason, recoverable=False)
        try:
            result = await sender.async_notify(title=title, body=body, timeout=self.timeout)
        except Exception as exc:  # apprise should not raise; if it does, this channel failed
            detail = redact(f"apprise raised {type(exc).__name__}: {exc}", url)
            log.warning("%s URL: %s", _scheme(url), detail)  # no traceback: it may hold the URL
            return Delivery(False, detail)
        return self._delivery(result, url, sender[0])

    def _delivery(self, result: AppriseResult, url: str, plugin: object) -> Delivery:
        services = result.results
        if not services:
            return Delivery(False, f"apprise notified nothing ({result.status.name})")
        service = services[-1]
        if service.status == AppriseResultStatus.SUCCESS:
            return Delivery(True, f"sent via {service.name}")
        if service.status == AppriseResultStatus.TIMEOUT:
            return Delivery(False, f"{service.name}: no answer within {self.timeout:g}s")
        # the last attempt's warnings say why (a NotifyAttempt is falsy when it failed)
        logs = service.attempts[-1].logs if service.attempts else []
        messages = [entry.message for entry in logs if entry.level in _LOUD]
        detail = "; ".join(dict.fromkeys(messages)) or f"{service.name}: failed, no reason given"
        # Our SMS plugins know a rejected number from a busy provider; apprise's own plugins
        # say neither, so their failures are worth another try.
        recoverable = getattr(plugin, "failure_recoverable", True)
        return Delivery(False, redact(detail, url)[:_DETAIL_MAX], recoverable=recoverable)
