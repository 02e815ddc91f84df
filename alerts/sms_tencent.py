"""Tencent Cloud SMS `SendSms` (API 3.0, version 2021-01-11) as an apprise notification plugin.

URL::

    tencentsms://SecretId:SecretKey@SdkAppId/SignName/TemplateId/PHONE[/PHONE...]
        ?region=ap-guangzhou&title=no&maxlen=&endpoint=https://...

* SdkAppId is the SMS application id (`1400...`), SignName the approved 签名
  (raw or percent-encoded), TemplateId the approved template id (digits).
* PHONE: an 11-digit mainland mobile (sent as `+8613800138000`), or `+<country><number>`.
* The template's `{1}` gets the message; with `title=yes` `{1}` gets the title and
  `{2}` the message, otherwise the title is put in front of the message. `maxlen`
  cuts each variable; `region` is X-TC-Region (default `ap-guangzhou`); `endpoint`
  replaces `https://sms.tencentcloudapi.com/` (tests point it at a local server).

Requests are POSTed as JSON and signed with TC3-HMAC-SHA256 over the headers
content-type, host and x-tc-action. A reply with `Response.Error`, or with any
`SendStatusSet` entry whose `Code` is not `Ok`, is a failure (Tencent answers
HTTP 200 to both).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import httpx
from apprise import NotifyType
from apprise.plugins.base import NotifyBase

from alerts.sms_aliyun import (
    SmsUrlError,
    e164_mobile,
    endpoint_url,
    mask_phone,
    path_segments,
    positive_int,
    shown,
    truncate,
)

__all__ = [
    "ACTION",
    "API_VERSION",
    "DEFAULT_ENDPOINT",
    "SCHEME",
    "SERVICE",
    "NotifyTencentSMS",
    "TencentReply",
    "authorization",
    "canonical_request",
    "parse_reply",
    "send_sms_payload",
    "signature",
    "string_to_sign",
]

SCHEME: Final = "tencentsms"
DEFAULT_ENDPOINT: Final = "https://sms.tencentcloudapi.com/"
DEFAULT_REGION: Final = "ap-guangzhou"
SERVICE: Final = "sms"
ACTION: Final = "SendSms"
API_VERSION: Final = "2021-01-11"
ALGORITHM: Final = "TC3-HMAC-SHA256"
CONTENT_TYPE: Final = "application/json; charset=utf-8"
_DIGITS = re.compile(r"^\d+$")
_TITLE_JOIN: Final = "："


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def canonical_request(
    *,
    method: str,
    query: str,
    headers: Mapping[str, str],
    payload: bytes,
) -> str:
    """Method, `/`, query, `key:value` headers (lower-cased, sorted), their names, payload hash."""
    signed = sorted((k.lower(), v.strip().lower()) for k, v in headers.items())
    canonical_headers = "".join(f"{k}:{v}\n" for k, v in signed)
    signed_headers = ";".join(k for k, _ in signed)
    return "\n".join([method, "/", query, canonical_headers, signed_headers, _sha256_hex(payload)])


def credential_date(timestamp: int) -> str:
    """The UTC date of the timestamp: a Beijing morning is still yesterday in the scope."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def string_to_sign(timestamp: int, service: str, request: str) -> str:
    """Algorithm, timestamp, credential scope and the hash of the canonical request."""
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    return "\n".join([ALGORITHM, str(timestamp), scope, _sha256_hex(request.encode())])


def signature(secret_key: str, timestamp: int, service: str, to_sign: str) -> str:
    """Hex HMAC-SHA256 with the key derived as TC3+key -> date -> service -> tc3_request."""
    key = _hmac(f"TC3{secret_key}".encode(), credential_date(timestamp))
    key = _hmac(key, service)
    key = _hmac(key, "tc3_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    *,
    secret_id: str,
    secret_key: str,
    service: str,
    headers: Mapping[str, str],
    payload: bytes,
    timestamp: int,
    method: str = "POST",
    query: str = "",
) -> str:
    """The Authorization header for a request whose signed headers are `headers`."""
    request = canonical_request(method=method, query=query, headers=headers, payload=payload)
    to_sign = string_to_sign(timestamp, service, request)
    signed_headers = ";".join(sorted(k.lower() for k in headers))
    scope = f"{credential_date(timestamp)}/{service}/tc3_request"
    return (
        f"{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={signed_headers}, "
        f"Signature={signature(secret_key, timestamp, service, to_sign)}"
    )


def send_sms_payload(
    *,
    sdk_app_id: str,
    sign_name: str,
    template_id: str,
    phones: Sequence[str],
    template_params: Sequence[str],
) -> bytes:
    """The JSON body of one SendSms call (up to 200 numbers)."""
    body = {
        "PhoneNumberSet": list(phones),
        "SmsSdkAppId": sdk_app_id,
        "SignName": sign_name,
        "TemplateId": template_id,
        "TemplateParamSet": list(template_params),
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def request_headers(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    region: str,
    payload: bytes,
    timestamp: int,
) -> dict[str, str]:
    """Every header of a SendSms request, Authorization included."""
    signed = {"Content-Type": CONTENT_TYPE, "Host": host, "X-TC-Action": ACTION}
    auth = authorization(
        secret_id=secret_id,
        secret_key=secret_key,
        service=SERVICE,
        headers=signed,
        payload=payload,
        timestamp=timestamp,
    )
    return {
        **signed,
        "Authorization": auth,
        "X-TC-Timestamp": str(timestamp),
        "X-TC-Version": API_VERSION,
        "X-TC-Region": region,
    }


@dataclass(frozen=True, slots=True)
class TencentReply:
    """What one SendSms reply means: accepted phones, and why the others were not."""

    ok: bool
    detail: str
    accepted: tuple[str, ...] = ()


def parse_reply(status: int, text: str) -> TencentReply:
    """Judge a reply: HTTP 2xx, no `Response.Error`, and every `SendStatusSet` Code `Ok`."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    response = data.get("Response") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        return TencentReply(False, f"HTTP {status}, not a Tencent Cloud reply: {text[:120]!r}")
    request_id = str(response.get("RequestId", ""))
    error = response.get("Error")
    if isinstance(error, dict):
        return TencentReply(
            False,
            f"{error.get('Code', 'no Code')} ({str(error.get('Message', ''))[:200]}), "
            f"HTTP {status}, RequestId={request_id}",
        )
    if not 200 <= status < 300:
        return TencentReply(False, f"HTTP {status}, RequestId={request_id}")
    entries = response.get("SendStatusSet")
    if not isinstance(entries, list) or not entries:
        return TencentReply(False, f"no SendStatusSet in the reply, RequestId={request_id}")
    accepted: list[str] = []
    problems: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"unreadable entry {entry!r:.60}")
            continue
        phone = str(entry.get("PhoneNumber", ""))
        if entry.get("Code") == "Ok":
            accepted.append(phone)
        else:
            problems.append(
                f"{mask_phone(phone)}: {entry.get('Code', 'no Code')} "
                f"({str(entry.get('Message', ''))[:120]})"
            )
    if problems:
        detail = "; ".join(problems) + f", RequestId={request_id}"
        return TencentReply(False, detail, tuple(accepted))
    return TencentReply(True, f"RequestId={request_id}", tuple(accepted))


class NotifyTencentSMS(NotifyBase):  # type: ignore[no-untyped-call]
    """Tencent Cloud SMS for apprise.

    A NotifyBase subclass in apprise's plugin registry rather than an
    `@notify(on=...)` function, for the reasons given on `NotifyAliyunSMS`: the
    URL is parsed and checked when it is added, and `url()` masks the key and
    the numbers. `send()` runs synchronously in apprise's worker thread.
    """

    # apprise's base classes declare these as None
    service_name = "Tencent Cloud SMS"  # type: ignore[assignment]
    service_url = "https://cloud.tencent.com/product/sms"  # type: ignore[assignment]
    secure_protocol = SCHEME  # type: ignore[assignment]
    templates = (  # type: ignore[assignment]
        "{schema}://{user}:{password}@{sdk_app_id}/{sign_name}/{template}/{targets}",
    )
    title_maxlen = 250
    body_maxlen = 1000

    def __init__(
        self,
        sign_name: str | None = None,
        template: str | None = None,
        targets: list[str] | None = None,
        region: str | None = None,
        title: str | bool | None = None,
        maxlen: str | int | None = None,
        endpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        if not (self.user and self.password):
            msg = "Tencent Cloud SMS needs SecretId:SecretKey@ before the SdkAppId"
            raise SmsUrlError(msg)
        if not self.host or not _DIGITS.match(self.host):
            msg = "Tencent Cloud SMS needs the numeric SdkAppId as the host part"
            raise SmsUrlError(msg)
        if not sign_name:
            msg = "Tencent Cloud SMS needs the sign name (SignName) after the SdkAppId"
            raise SmsUrlError(msg)
        if not template or not _DIGITS.match(template):
            msg = "Tencent Cloud SMS needs the numeric TemplateId after the sign name"
            raise SmsUrlError(msg)
        self.secret_id = str(self.user)
        self.secret_key = str(self.password)
        self.sdk_app_id = str(self.host)
        self.sign_name = sign_name
        self.template = template
        self.region = region or DEFAULT_REGION
        self.title_param = _flag(title)
        self.maxlen = positive_int(maxlen, "maxlen")
        self.endpoint = endpoint_url(endpoint or DEFAULT_ENDPOINT)
        try:
            self.phones = [e164_mobile(t) for t in targets or []]
        except ValueError as exc:
            raise SmsUrlError(f"Tencent Cloud SMS: {exc}") from exc
        if not self.phones:
            msg = "Tencent Cloud SMS needs at least one phone number after the TemplateId"
            raise SmsUrlError(msg)

    def template_values(self, title: str, body: str) -> list[str]:
        """TemplateParamSet: `[message]`, or `[title, message]` with `title=yes`."""
        if self.title_param:
            values = [title, body]
        else:
            values = [f"{title}{_TITLE_JOIN}{body}" if title else body]
        return [truncate(v, self.maxlen) for v in values]

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: NotifyType = NotifyType.INFO,
        **kwargs: Any,
    ) -> bool:
        """One SendSms request for every phone not yet accepted; True if all were."""
        phones = [p for p in self.phones if not self.is_delivered(p)]
        if not phones:
            return True
        payload = send_sms_payload(
            sdk_app_id=self.sdk_app_id,
            sign_name=self.sign_name,
            template_id=self.template,
            phones=phones,
            template_params=self.template_values(title, body),
        )
        headers = request_headers(
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            host=urlsplit(self.endpoint).netloc,
            region=self.region,
            payload=payload,
            timestamp=int(time.time()),
        )
        shown_phones = ", ".join(mask_phone(p) for p in phones)
        try:
            with httpx.Client(
                timeout=httpx.Timeout(
                    self.socket_read_timeout, connect=self.socket_connect_timeout
                ),
                verify=self.verify_certificate,
                follow_redirects=False,
            ) as client:
                response = client.post(self.endpoint, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            self.logger.warning(
                "Tencent Cloud SMS to %s: %s: %s", shown_phones, type(exc).__name__, exc
            )
            return False
        reply = parse_reply(response.status_code, response.text)
        for phone in reply.accepted:
            self.mark_delivered(phone)  # a retry within apprise skips accepted phones
        if reply.ok:
            self.logger.info("Tencent Cloud SMS to %s: %s", shown_phones, reply.detail)
        else:
            self.logger.warning("Tencent Cloud SMS to %s: %s", shown_phones, reply.detail)
        return reply.ok

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """The URL back, with the key and the phone numbers masked under privacy."""
        params: dict[str, str] = {
            "region": self.region,
            "title": "yes" if self.title_param else "no",
        }
        if self.maxlen is not None:
            params["maxlen"] = str(self.maxlen)
        if self.endpoint != DEFAULT_ENDPOINT:
            params["endpoint"] = self.endpoint
        params.update(self.url_parameters(*args, privacy=privacy, **kwargs))
        phones = [mask_phone(p) if privacy else p for p in self.phones]
        return "{schema}://{user}:{secret}@{app}/{sign}/{template}/{phones}?{query}".format(
            schema=SCHEME,
            user=shown(self.secret_id, privacy),
            secret="****" if privacy else quote(self.secret_key, safe=""),
            app=self.sdk_app_id,
            sign=quote(self.sign_name, safe=""),
            template=self.template,
            phones="/".join(quote(p, safe="*") for p in phones),
            query=urlencode(params),
        )

    @property
    def url_identifier(self) -> tuple[str, ...]:  # type: ignore[override]
        """What makes two of these URLs the same account and sender."""
        return (SCHEME, self.secret_id, self.secret_key, self.sdk_app_id, self.sign_name)

    def __len__(self) -> int:
        return 1  # one request carries every phone

    @staticmethod
    def parse_url(  # type: ignore[override]  # NotifyBase narrows URLBase's signature too
        url: str, verify_host: bool = False, plus_to_space: bool = False
    ) -> dict[str, Any] | None:
        """Split the URL into keyword arguments for `__init__`."""
        results = NotifyBase.parse_url(url, verify_host=False, plus_to_space=plus_to_space)
        if not results:
            return results
        parts = path_segments(results["fullpath"])
        results["sign_name"] = parts[0] if parts else None
        results["template"] = parts[1] if len(parts) > 1 else None
        results["targets"] = parts[2:]
        query: dict[str, str] = results["qsd"]  # apprise has decoded these already
        for name in ("region", "title", "maxlen", "endpoint"):
            if query.get(name):
                results[name] = query[name]
        return results


def _flag(value: str | bool | None) -> bool:
    if isinstance(value, bool):
        return value
    return (value or "").strip().lower() in ("yes", "y", "true", "1", "on")
