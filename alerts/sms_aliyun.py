"""Aliyun (Alibaba Cloud) SMS `SendSms` as an apprise notification plugin.

URL::

    aliyunsms://AccessKeyId:AccessKeySecret@SignName/TemplateCode/PHONE[/PHONE...]
        ?param=content&title_param=&region=cn-hangzhou&maxlen=&endpoint=https://...

* SignName (the approved 签名, usually Chinese) is the host part; write it raw or
  percent-encoded (`%E7%AD%BE%E5%90%8D`), both decode to the same name.
* TemplateCode is the approved template, e.g. `SMS_123456789`.
* PHONE: an 11-digit mainland mobile (`13800138000`, `+8613800138000`,
  `008613800138000` all mean the same), or `+<country><number>` abroad.
* `param` (default `content`) names the template variable the message goes into;
  `title_param` names one for the title (without it the title is put in front of
  the message); `maxlen` cuts each variable to that many characters (Aliyun limits
  variable length); `region` is the RegionId (default `cn-hangzhou`); `endpoint`
  replaces `https://dysmsapi.aliyuncs.com/` (tests point it at a local server).

Aliyun's RPC API (version 2017-05-25) is signed with signature version 1.0:
HMAC-SHA1 over `GET&%2F&` + percent-encoded canonical query, keyed with
`AccessKeySecret + "&"`. A reply whose `Code` is not `OK` is a failure even with
HTTP 200 (`isv.BUSINESS_LIMIT_CONTROL` is a 200).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, unquote, urlencode, urlsplit

import httpx
from apprise import NotifyType
from apprise.plugins.base import NotifyBase

__all__ = [
    "API_VERSION",
    "DEFAULT_ENDPOINT",
    "SCHEME",
    "AliyunReply",
    "NotifyAliyunSMS",
    "SmsUrlError",
    "canonical_query",
    "e164_mobile",
    "endpoint_url",
    "mask_phone",
    "parse_reply",
    "path_segments",
    "percent_encode",
    "positive_int",
    "send_sms_params",
    "shown",
    "sign",
    "signed_url",
    "string_to_sign",
    "truncate",
]

SCHEME: Final = "aliyunsms"
DEFAULT_ENDPOINT: Final = "https://dysmsapi.aliyuncs.com/"
DEFAULT_REGION: Final = "cn-hangzhou"
DEFAULT_PARAM: Final = "content"
API_VERSION: Final = "2017-05-25"
_METHOD: Final = "GET"  # the method of Aliyun's published SendSms examples
_MAINLAND = re.compile(r"^(?:\+86|0086|86)?(1[3-9]\d{9})$")
_INTERNATIONAL = re.compile(r"^(?:\+|00)([1-9]\d{6,14})$")  # E.164: at most 15 digits
_TEMPLATE_CODE = re.compile(r"^[A-Za-z0-9_]+$")
_TITLE_JOIN: Final = "："  # full-width colon: SMS text here is Chinese


def percent_encode(value: str) -> str:
    """Aliyun's POP encoding: RFC 3986 over UTF-8, only `A-Za-z0-9-_.~` left as is."""
    return quote(value, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """Sorted `name=value` pairs, both encoded, joined with `&` (Signature excluded)."""
    return "&".join(
        f"{percent_encode(k)}={percent_encode(v)}"
        for k, v in sorted(params.items())
        if k != "Signature"
    )


def string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """`HTTPMethod&%2F&` followed by the encoded canonical query."""
    return f"{method}&{percent_encode('/')}&{percent_encode(canonical_query(params))}"


def sign(method: str, params: Mapping[str, str], secret: str) -> str:
    """Base64 HMAC-SHA1 of the string to sign, keyed with `secret + "&"`."""
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, params).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def send_sms_params(
    *,
    access_key_id: str,
    sign_name: str,
    template_code: str,
    phone: str,
    template_param: Mapping[str, str],
    region: str,
    timestamp: datetime,
    nonce: str,
) -> dict[str, str]:
    """The unsigned parameters of one SendSms call (common and operation parameters)."""
    return {
        "AccessKeyId": access_key_id,
        "Action": "SendSms",
        "Format": "JSON",
        "PhoneNumbers": phone,
        "RegionId": region,
        "SignName": sign_name,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureNonce": nonce,
        "SignatureVersion": "1.0",
        "TemplateCode": template_code,
        "TemplateParam": json.dumps(template_param, ensure_ascii=False, separators=(",", ":")),
        "Timestamp": timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": API_VERSION,
    }


def signed_url(endpoint: str, params: Mapping[str, str], secret: str) -> str:
    """The request URL: the endpoint, the signature, then the encoded parameters."""
    signature = percent_encode(sign(_METHOD, params, secret))
    return f"{endpoint}?Signature={signature}&{canonical_query(params)}"


@dataclass(frozen=True, slots=True)
class AliyunReply:
    """What one SendSms reply means: accepted or not, and why (for the timeline)."""

    ok: bool
    detail: str


def parse_reply(status: int, text: str) -> AliyunReply:
    """Judge a reply: HTTP 2xx and `"Code": "OK"`; anything else says what went wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return AliyunReply(False, f"HTTP {status}, not a JSON reply: {text[:120]!r}")
    code = str(data.get("Code", ""))
    message = str(data.get("Message", ""))
    request_id = str(data.get("RequestId", ""))
    if 200 <= status < 300 and code == "OK":
        return AliyunReply(True, f"BizId={data.get('BizId', '')} RequestId={request_id}")
    return AliyunReply(
        False, f"{code or 'no Code'} ({message[:200]}), HTTP {status}, RequestId={request_id}"
    )


def e164_mobile(raw: str) -> str:
    """`+8613800138000` for any way of writing a mainland mobile, `+<digits>` abroad."""
    compact = re.sub(r"[\s()-]", "", raw)
    if match := _MAINLAND.match(compact):
        return f"+86{match.group(1)}"
    match = _INTERNATIONAL.match(compact)
    if match and not match.group(1).startswith("86"):  # +86 but not a mobile: no SMS
        return f"+{match.group(1)}"
    msg = f"not a mobile number: {mask_phone(compact)}"
    raise ValueError(msg)


def _aliyun_phone(raw: str) -> str:
    """The PhoneNumbers form Aliyun wants: 11 digits at home, country code + number abroad."""
    e164 = e164_mobile(raw)
    return e164[3:] if e164.startswith("+86") else e164[1:]


def mask_phone(phone: str) -> str:
    """`138****8000` (`+86138****8000`): tells numbers apart in a log, not enough to call."""
    prefix, rest = ("+86", phone[3:]) if phone.startswith("+86") else ("", phone)
    digits = rest.lstrip("+")
    if len(digits) < 8:
        return "****"
    return f"{prefix}{digits[:3]}****{digits[-4:]}"


def truncate(value: str, maxlen: int | None) -> str:
    """At most `maxlen` characters, the last one an ellipsis when something was cut."""
    if maxlen is None or len(value) <= maxlen:
        return value
    return value[: max(maxlen - 1, 0)] + "…"


class SmsUrlError(ValueError):
    """An SMS channel URL that cannot work: missing credentials, template, phone..."""


def shown(value: str, privacy: bool) -> str:
    """A URL part as apprise prints it: quoted, or `a...z` when privacy is asked for."""
    if not privacy:
        return quote(value, safe="")
    return f"{value[:1]}...{value[-1:]}" if value else ""


class NotifyAliyunSMS(NotifyBase):  # type: ignore[no-untyped-call]
    """Aliyun SMS for apprise.

    A NotifyBase subclass registered in apprise's plugin registry, not an
    `@notify(on=...)` function: the decorator's plugin accepts every URL of its
    scheme and only parses it when sending, and prints itself as `aliyunsms://`.
    A subclass owns `parse_url()`, so a URL without credentials, template or a
    valid phone is refused when it is added (and by `check_url`), and `url()` can
    mask the secret and the phone numbers. apprise calls `send()` synchronously in
    a worker thread, hence the synchronous httpx client with a timeout.
    """

    # apprise's base classes declare these as None
    service_name = "Aliyun SMS"  # type: ignore[assignment]
    service_url = "https://www.aliyun.com/product/sms"  # type: ignore[assignment]
    secure_protocol = SCHEME  # type: ignore[assignment]
    templates = ("{schema}://{user}:{password}@{sign_name}/{template}/{targets}",)  # type: ignore[assignment]
    title_maxlen = 250
    body_maxlen = 1000

    def __init__(
        self,
        template: str | None = None,
        targets: list[str] | None = None,
        param: str | None = None,
        title_param: str | None = None,
        region: str | None = None,
        maxlen: str | int | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        if not (self.user and self.password):
            msg = "Aliyun SMS needs AccessKeyId:AccessKeySecret@ before the sign name"
            raise SmsUrlError(msg)
        if not self.host:
            msg = "Aliyun SMS needs the sign name (SignName) as the host part"
            raise SmsUrlError(msg)
        if not template or not _TEMPLATE_CODE.match(template):
            msg = "Aliyun SMS needs a template code such as SMS_123456789 after the sign name"
            raise SmsUrlError(msg)
        self.access_key_id = str(self.user)
        self.access_key_secret = str(self.password)
        self.sign_name = str(self.host)
        self.template = template
        self.param = param or DEFAULT_PARAM
        self.title_param = title_param or None
        self.region = region or DEFAULT_REGION
        self.maxlen = positive_int(maxlen, "maxlen")
        self.endpoint = endpoint_url(endpoint or DEFAULT_ENDPOINT)
        try:
            self.phones = [_aliyun_phone(t) for t in targets or []]
        except ValueError as exc:
            raise SmsUrlError(f"Aliyun SMS: {exc}") from exc
        if not self.phones:
            msg = "Aliyun SMS needs at least one phone number after the template code"
            raise SmsUrlError(msg)

    def template_values(self, title: str, body: str) -> dict[str, str]:
        """The TemplateParam object: the message (and title) under the configured names."""
        if self.title_param:
            values = {self.title_param: title, self.param: body}
        else:
            values = {self.param: f"{title}{_TITLE_JOIN}{body}" if title else body}
        return {k: truncate(v, self.maxlen) for k, v in values.items()}

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: NotifyType = NotifyType.INFO,
        **kwargs: Any,
    ) -> bool:
        """One SendSms request per phone; True only if every phone was accepted."""
        values = self.template_values(title, body)
        failed = 0
        with httpx.Client(
            timeout=httpx.Timeout(self.socket_read_timeout, connect=self.socket_connect_timeout),
            verify=self.verify_certificate,
            follow_redirects=False,
        ) as client:
            for phone in self.phones:
                if self.is_delivered(phone):  # a retry within apprise skips accepted phones
                    continue
                params = send_sms_params(
                    access_key_id=self.access_key_id,
                    sign_name=self.sign_name,
                    template_code=self.template,
                    phone=phone,
                    template_param=values,
                    region=self.region,
                    timestamp=datetime.now(UTC),
                    nonce=uuid.uuid4().hex,
                )
                try:
                    response = client.get(signed_url(self.endpoint, params, self.access_key_secret))
                except httpx.HTTPError as exc:
                    failed += 1
                    self.logger.warning(
                        "Aliyun SMS to %s: %s: %s", mask_phone(phone), type(exc).__name__, exc
                    )
                    continue
                reply = parse_reply(response.status_code, response.text)
                if reply.ok:
                    self.mark_delivered(phone)
                    self.logger.info("Aliyun SMS to %s: %s", mask_phone(phone), reply.detail)
                else:
                    failed += 1
                    self.logger.warning("Aliyun SMS to %s: %s", mask_phone(phone), reply.detail)
        return failed == 0

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """The URL back, with the secret and the phone numbers masked under privacy."""
        params: dict[str, str] = {"param": self.param, "region": self.region}
        if self.title_param:
            params["title_param"] = self.title_param
        if self.maxlen is not None:
            params["maxlen"] = str(self.maxlen)
        if self.endpoint != DEFAULT_ENDPOINT:
            params["endpoint"] = self.endpoint
        params.update(self.url_parameters(*args, privacy=privacy, **kwargs))
        phones = [mask_phone(p) if privacy else p for p in self.phones]
        return "{schema}://{user}:{secret}@{sign}/{template}/{phones}?{query}".format(
            schema=SCHEME,
            user=shown(self.access_key_id, privacy),
            secret="****" if privacy else quote(self.access_key_secret, safe=""),
            sign=quote(self.sign_name, safe=""),
            template=quote(self.template, safe=""),
            phones="/".join(quote(p, safe="*") for p in phones),
            query=urlencode(params),
        )

    @property
    def url_identifier(self) -> tuple[str, ...]:  # type: ignore[override]
        """What makes two of these URLs the same account and sender."""
        return (SCHEME, self.access_key_id, self.access_key_secret, self.sign_name, self.template)

    def __len__(self) -> int:
        return len(self.phones)

    @staticmethod
    def parse_url(  # type: ignore[override]  # NotifyBase narrows URLBase's signature too
        url: str, verify_host: bool = False, plus_to_space: bool = False
    ) -> dict[str, Any] | None:
        """Split the URL into keyword arguments for `__init__`."""
        results = NotifyBase.parse_url(url, verify_host=False, plus_to_space=plus_to_space)
        if not results:
            return results
        parts = path_segments(results["fullpath"])
        results["template"] = parts[0] if parts else None
        results["targets"] = parts[1:]
        query: dict[str, str] = results["qsd"]  # apprise has decoded these already
        for name in ("param", "title_param", "region", "maxlen", "endpoint"):
            if query.get(name):
                results[name] = query[name]
        return results


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
