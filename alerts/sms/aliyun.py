"""Aliyun (Alibaba Cloud) SMS `SendSms` as an apprise plugin: RPC signing, request, reply.

URL, options and signing: docs/alerts.md, "Channels".
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
from urllib.parse import quote

import httpx
from apprise import NotifyType

from alerts.sms.base import (
    SmsPlugin,
    SmsUrlError,
    join_title,
    mask_number,
    shown,
    transient_status,
    truncate,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_ENDPOINT",
    "SCHEME",
    "AliyunReply",
    "NotifyAliyunSMS",
    "canonical_query",
    "parse_reply",
    "percent_encode",
    "send_sms_params",
    "sign",
    "signed_url",
    "string_to_sign",
]

SCHEME: Final = "aliyunsms"
DEFAULT_ENDPOINT: Final = "https://dysmsapi.aliyuncs.com/"
DEFAULT_REGION: Final = "cn-hangzhou"
DEFAULT_PARAM: Final = "content"
API_VERSION: Final = "2017-05-25"
_METHOD: Final = "GET"  # the method of Aliyun's published SendSms examples
_TEMPLATE_CODE = re.compile(r"^[A-Za-z0-9_]+$")
# Codes of a busy or broken provider (flow control, system errors): worth another try.
# Any other code (a bad signature, number, template or balance) will not change by retrying.
_TRANSIENT_CODES: Final = (
    "isv.BUSINESS_LIMIT_CONTROL",
    "isp.SYSTEM_ERROR",
    "Throttling",
    "ServiceUnavailable",
    "InternalError",
)


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
    """What one SendSms reply means: accepted or not, why, and whether a retry could help."""

    ok: bool
    detail: str
    recoverable: bool = True


def parse_reply(status: int, text: str) -> AliyunReply:
    """Judge a reply: HTTP 2xx and `"Code": "OK"`; anything else says what went wrong."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return AliyunReply(
            False, f"HTTP {status}, not a JSON reply: {text[:120]!r}", transient_status(status)
        )
    code = str(data.get("Code", ""))
    message = str(data.get("Message", ""))
    request_id = str(data.get("RequestId", ""))
    if 200 <= status < 300 and code == "OK":
        return AliyunReply(True, f"BizId={data.get('BizId', '')} RequestId={request_id}")
    recoverable = transient_status(status) or code.startswith(_TRANSIENT_CODES)
    return AliyunReply(
        False,
        f"{code or 'no Code'} ({message[:200]}), HTTP {status}, RequestId={request_id}",
        recoverable,
    )


class NotifyAliyunSMS(SmsPlugin):  # type: ignore[no-untyped-call]
    """Aliyun SMS for apprise: one SendSms request per phone."""

    # apprise's base classes declare these as None
    service_name = "Aliyun SMS"  # type: ignore[assignment]
    service_url = "https://www.aliyun.com/product/sms"  # type: ignore[assignment]
    secure_protocol = SCHEME  # type: ignore[assignment]
    templates = ("{schema}://{user}:{password}@{sign_name}/{template}/{targets}",)  # type: ignore[assignment]
    default_endpoint = DEFAULT_ENDPOINT
    credentials_hint = "AccessKeyId:AccessKeySecret@ before the sign name"
    phones_hint = "after the template code"
    url_options = ("param", "title_param", "region", "maxlen", "endpoint")

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
        super().__init__(**kwargs)
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
        self.set_targets(targets, maxlen, endpoint)

    def phone_form(self, raw: str) -> str:
        """11 digits for a mainland mobile, country code and number (no `+`) abroad."""
        e164 = super().phone_form(raw)
        return e164[3:] if e164.startswith("+86") else e164[1:]

    def template_values(self, title: str, body: str) -> dict[str, str]:
        """The TemplateParam object: the message (and title) under the configured names."""
        if self.title_param:
            values = {self.title_param: title, self.param: body}
        else:
            values = {self.param: join_title(title, body)}
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
        self.failure_recoverable = True
        failed = 0
        with self.http_client() as client:
            for phone in self.phones:
                if self.is_delivered(phone):  # a retry within apprise skips accepted phones
                    continue
                if not self._send_one(client, phone, values):
                    failed += 1
        return failed == 0

    def _send_one(self, client: httpx.Client, phone: str, values: dict[str, str]) -> bool:
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
            self.logger.warning(
                "Aliyun SMS to %s: %s: %s", mask_number(phone), type(exc).__name__, exc
            )
            return False
        reply = parse_reply(response.status_code, response.text)
        if reply.ok:
            self.mark_delivered(phone)
            self.logger.info("Aliyun SMS to %s: %s", mask_number(phone), reply.detail)
            return True
        self.failure_recoverable = self.failure_recoverable and reply.recoverable
        self.logger.warning("Aliyun SMS to %s: %s", mask_number(phone), reply.detail)
        return False

    def url(self, privacy: bool = False, *args: Any, **kwargs: Any) -> str:
        """The URL back, with the secret and the phone numbers masked under privacy."""
        params: dict[str, str] = {"param": self.param, "region": self.region}
        if self.title_param:
            params["title_param"] = self.title_param
        return "{schema}://{user}:{secret}@{sign}/{template}/{phones}?{query}".format(
            schema=SCHEME,
            user=shown(self.access_key_id, privacy),
            secret="****" if privacy else quote(self.access_key_secret, safe=""),
            sign=quote(self.sign_name, safe=""),
            template=quote(self.template, safe=""),
            phones=self.url_phones(privacy),
            query=self.url_query(params, privacy, *args, **kwargs),
        )

    @property
    def url_identifier(self) -> tuple[str, ...]:  # type: ignore[override]
        """What makes two of these URLs the same account and sender."""
        return (SCHEME, self.access_key_id, self.access_key_secret, self.sign_name, self.template)

    def __len__(self) -> int:
        return len(self.phones)

    @classmethod
    def path_fields(cls, parts: list[str]) -> dict[str, Any]:
        """`SignName` is the host; the path is the template code, then the phones."""
        return {"template": parts[0] if parts else None, "targets": parts[1:]}
