"""Tencent Cloud SMS `SendSms` (API 3.0) as an apprise plugin: TC3 signing, request, reply.

URL, options and signing: docs/alerts.md, "Channels".
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
from urllib.parse import quote, urlsplit

import httpx
from apprise import NotifyType

from alerts.sms.base import (
    SmsPlugin,
    SmsUrlError,
    flag,
    join_title,
    mask_number,
    shown,
    transient_status,
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
# Codes of a busy or broken provider, or of a short-term frequency limit: worth another
# try. Any other code (signature, template, number, a daily limit) will not change by retrying.
_TRANSIENT_CODES: Final = (
    "InternalError",
    "RequestLimitExceeded",
    "ResourceUnavailable",
    "LimitExceeded.DeliveryFrequencyLimit",
    "LimitExceeded.PhoneNumberThirtySecondLimit",
    "LimitExceeded.PhoneNumberOneHourLimit",
)


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
    """What one SendSms reply means: accepted phones, why the others were not, retry or not."""

    ok: bool
    detail: str
    accepted: tuple[str, ...] = ()
    recoverable: bool = True


def parse_reply(status: int, text: str) -> TencentReply:
    """Judge a reply: HTTP 2xx, no `Response.Error`, and every `SendStatusSet` Code `Ok`."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    response = data.get("Response") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        detail = f"HTTP {status}, not a Tencent Cloud reply: {text[:120]!r}"
        return TencentReply(False, detail, recoverable=transient_status(status))
    request_id = str(response.get("RequestId", ""))
    error = response.get("Error")
    if isinstance(error, dict):
        code = str(error.get("Code", "no Code"))
        detail = (
            f"{code} ({str(error.get('Message', ''))[:200]}), HTTP {status}, RequestId={request_id}"
        )
        recoverable = transient_status(status) or code.startswith(_TRANSIENT_CODES)
        return TencentReply(False, detail, recoverable=recoverable)
    if not 200 <= status < 300:
        return TencentReply(
            False, f"HTTP {status}, RequestId={request_id}", recoverable=transient_status(status)
        )
    return _send_status(response.get("SendStatusSet"), request_id)


def _send_status(entries: object, request_id: str) -> TencentReply:
    """The reply's per-phone verdicts: ok only if every phone was accepted."""
    if not isinstance(entries, list) or not entries:
        return TencentReply(False, f"no SendStatusSet in the reply, RequestId={request_id}")
    accepted: list[str] = []
    problems: list[str] = []
    recoverable = True
    for entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"unreadable entry {entry!r:.60}")
            continue
        phone = str(entry.get("PhoneNumber", ""))
        code = str(entry.get("Code", "no Code"))
        if code == "Ok":
            accepted.append(phone)
            continue
        recoverable = recoverable and code.startswith(_TRANSIENT_CODES)
        problems.append(f"{mask_number(phone)}: {code} ({str(entry.get('Message', ''))[:120]})")
    if problems:
        detail = "; ".join(problems) + f", RequestId={request_id}"
        return TencentReply(False, detail, tuple(accepted), recoverable)
    return TencentReply(True, f"RequestId={request_id}", tuple(accepted))


class NotifyTencentSMS(SmsPlugin):  # type: ignore[no-untyped-call]
    """Tencent Cloud SMS for apprise: one SendSms request carries every phone."""

    # apprise's base classes declare these as None
    service_name = "Tencent Cloud SMS"  # type: ignore[assignment]
    service_url = "https://cloud.tencent.com/product/sms"  # type: ignore[assignment]
    secure_protocol = SCHEME  # type: ignore[assignment]
    templates = (  # type: ignore[assignment]
        "{schema}://{user}:{password}@{sdk_app_id}/{sign_name}/{template}/{targets}",
    )
    default_endpoint = DEFAULT_ENDPOINT
    credentials_hint = "SecretId:SecretKey@ before the SdkAppId"
    phones_hint = "after the TemplateId"
    url_options = ("region", "title", "maxlen", "endpoint")

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
        super().__init__(**kwargs)
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
        self.title_param = flag(title)
        self.set_targets(targets, maxlen, endpoint)

    def template_values(self, title: str, body: str) -> list[str]:
        """TemplateParamSet: `[message]`, or `[title, message]` with `title=yes`."""
        values = [title, body] if self.title_param else [join_title(title, body)]
        return [truncate(v, self.maxlen) for v in values]

    def send(
        self,
        body: str,
        title: str = "",
        notify_type: NotifyType = NotifyType.INFO,
        **kwargs: Any,
    ) -> bool:
        """One SendSms request for every phone not yet accepted; True if all were."""
        self.failure_recoverable = True
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
        shown_phones = ", ".join(mask_number(p) for p in phones)
        try:
            with self.http_client() as client:
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
            self.failure_recoverable = reply.recoverable
            self.logger.warning("Tencent Cloud SMS to %s: %s", shown_phones, reply.detail)
        return reply.ok

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """The URL back, with the key and the phone numbers masked under privacy."""
        params = {"region": self.region, "title": "yes" if self.title_param else "no"}
        return "{schema}://{user}:{secret}@{app}/{sign}/{template}/{phones}?{query}".format(
            schema=SCHEME,
            user=shown(self.secret_id, privacy),
            secret="****" if privacy else quote(self.secret_key, safe=""),
            app=self.sdk_app_id,
            sign=quote(self.sign_name, safe=""),
            template=self.template,
            phones=self.url_phones(privacy),
            query=self.url_query(params, privacy, *args, **kwargs),
        )

    @property
    def url_identifier(self) -> tuple[str, ...]:  # type: ignore[override]
        """What makes two of these URLs the same account and sender."""
        return (SCHEME, self.secret_id, self.secret_key, self.sdk_app_id, self.sign_name)

    def __len__(self) -> int:
        return 1  # one request carries every phone

    @classmethod
    def path_fields(cls, parts: list[str]) -> dict[str, Any]:
        """`SdkAppId` is the host; the path is the sign name, the template id, the phones."""
        return {
            "sign_name": parts[0] if parts else None,
            "template": parts[1] if len(parts) > 1 else None,
            "targets": parts[2:],
        }
