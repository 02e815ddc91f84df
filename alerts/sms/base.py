"""What the SMS plugins share: the apprise plumbing, phone numbers, template text, masking.

A provider's module adds only its signing, its request and the reading of its reply
(docs/alerts.md, "Channels").
"""

from __future__ import annotations

from typing import Any, ClassVar, Final
from urllib.parse import quote, unquote, urlencode, urlsplit

import httpx
from apprise.plugins.base import NotifyBase

from alerts.exceptions import SmsUrlError
from core.phones import e164_mobile, mask_phone

__all__ = [
    "SmsPlugin",
    "SmsUrlError",
    "endpoint_url",
    "flag",
    "join_title",
    "mask_number",
    "path_segments",
    "positive_int",
    "shown",
    "transient_status",
    "truncate",
]

_TITLE_JOIN: Final = "："  # full-width colon: SMS text here is Chinese


class SmsPlugin(NotifyBase):  # type: ignore[no-untyped-call]
    """An SMS provider for apprise: a NotifyBase subclass in apprise's plugin registry.

    Not an `@notify(on=...)` function: the decorator's plugin accepts every URL of its
    scheme and only parses it when sending. A subclass owns `parse_url()`, so a URL
    without credentials, template or a valid phone is refused when it is added (and by
    `check_url`), and `url()` can mask the secret and the numbers. apprise calls
    `send()` synchronously in a worker thread, hence a synchronous httpx client.
    """

    default_endpoint: ClassVar[str]
    credentials_hint: ClassVar[str]  # "AccessKeyId:AccessKeySecret@ before the sign name"
    phones_hint: ClassVar[str]  # "after the template code"
    url_options: ClassVar[tuple[str, ...]]  # query options passed on to `__init__`
    title_maxlen = 250
    body_maxlen = 1000

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        if not (self.user and self.password):
            msg = f"{self.service_name} needs {self.credentials_hint}"
            raise SmsUrlError(msg)
        # Set by each send: False when the provider refused for good (see `Delivery`).
        self.failure_recoverable = True

    def set_targets(
        self, targets: list[str] | None, maxlen: str | int | None, endpoint: str | None
    ) -> None:
        """The options every provider has: the phones, `maxlen` and `endpoint`."""
        self.maxlen = positive_int(maxlen, "maxlen")
        self.endpoint = endpoint_url(endpoint or self.default_endpoint)
        try:
            self.phones = [self.phone_form(t) for t in targets or []]
        except ValueError as exc:
            raise SmsUrlError(f"{self.service_name}: {exc}") from exc
        if not self.phones:
            msg = f"{self.service_name} needs at least one phone number {self.phones_hint}"
            raise SmsUrlError(msg)

    def phone_form(self, raw: str) -> str:
        """The number as the provider wants it (E.164 unless a provider says otherwise)."""
        return e164_mobile(raw)

    def http_client(self) -> httpx.Client:
        """A client with apprise's connect and read timeouts (`?cto=`, `?rto=`)."""
        return httpx.Client(
            timeout=httpx.Timeout(self.socket_read_timeout, connect=self.socket_connect_timeout),
            verify=self.verify_certificate,
            follow_redirects=False,
        )

    def url_query(self, params: dict[str, str], privacy: bool, *args: Any, **kwargs: Any) -> str:
        """The URL's query: the provider's `params`, then `maxlen`, `endpoint`, apprise's own."""
        if self.maxlen is not None:
            params["maxlen"] = str(self.maxlen)
        if self.endpoint != self.default_endpoint:
            params["endpoint"] = self.endpoint
        params.update(self.url_parameters(*args, privacy=privacy, **kwargs))
        return urlencode(params)

    def url_phones(self, privacy: bool) -> str:
        """The phones as the URL's last path segments, masked under privacy."""
        phones = [mask_number(p) if privacy else p for p in self.phones]
        return "/".join(quote(p, safe="*") for p in phones)

    @classmethod
    def path_fields(cls, parts: list[str]) -> dict[str, Any]:
        """`__init__`'s keyword arguments from the URL's path segments."""
        raise NotImplementedError

    @classmethod
    def parse_url(  # type: ignore[override]  # NotifyBase narrows URLBase's signature too
        cls, url: str, verify_host: bool = False, plus_to_space: bool = False
    ) -> dict[str, Any] | None:
        """Split the URL into keyword arguments for `__init__`."""
        results = NotifyBase.parse_url(url, verify_host=False, plus_to_space=plus_to_space)
        if not results:
            return results
        results.update(cls.path_fields(path_segments(results["fullpath"])))
        query: dict[str, str] = results["qsd"]  # apprise has decoded these already
        for name in cls.url_options:
            if query.get(name):
                results[name] = query[name]
        return results


def transient_status(status: int) -> bool:
    """HTTP statuses worth another try: the provider was busy or broken, not the request."""
    return status >= 500 or status == 429


def mask_number(phone: str) -> str:
    """One SMS target masked, its `+86` kept: `+86138****8000`; `****` when too short."""
    prefix, national = ("+86", phone[3:]) if phone.startswith("+86") else ("", phone.lstrip("+"))
    if len(national) < 8:
        return "****"
    masked = mask_phone(national)
    if masked == national:  # a number abroad, which core.phones does not recognise
        masked = f"{national[:3]}****{national[-4:]}"
    return prefix + masked


def join_title(title: str, body: str) -> str:
    """The title in front of the message, for templates with a single variable."""
    return f"{title}{_TITLE_JOIN}{body}" if title else body


def truncate(value: str, maxlen: int | None) -> str:
    """At most `maxlen` characters, the last one an ellipsis when something was cut."""
    if maxlen is None or len(value) <= maxlen:
        return value
    return value[: max(maxlen - 1, 0)] + "…"


def shown(value: str, privacy: bool) -> str:
    """A URL part as apprise prints it: quoted, or `a...z` when privacy is asked for."""
    if not privacy:
        return quote(value, safe="")
    return f"{value[:1]}...{value[-1:]}" if value else ""


def path_segments(fullpath: str | None) -> list[str]:
    """Path segments split on `/` alone, then decoded (apprise also splits on spaces and commas)."""
    return [unquote(part) for part in (fullpath or "").split("/") if part]


def positive_int(value: str | int | None, name: str) -> int | None:
    """A URL option that must be a whole number of at least 1, or None when absent."""
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError as exc:
        msg = f"{name} must be a whole number, not {value!r}"
        raise SmsUrlError(msg) from exc
    if number < 1:
        msg = f"{name} must be at least 1"
        raise SmsUrlError(msg)
    return number


def endpoint_url(value: str) -> str:
    """An http(s) endpoint URL, with `/` as its path when it has none."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        msg = "endpoint must be an http:// or https:// URL"
        raise SmsUrlError(msg)
    return value if parts.path else value + "/"


def flag(value: str | bool | None) -> bool:
    """A yes/no URL option (`title=yes`)."""
    if isinstance(value, bool):
        return value
    return (value or "").strip().lower() in ("yes", "y", "true", "1", "on")
