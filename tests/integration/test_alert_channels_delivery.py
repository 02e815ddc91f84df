"""Delivery through `Channels` against a real local HTTP server standing in for Aliyun SMS,
Tencent Cloud SMS and a `json://` receiver: what goes over the wire, and how success,
provider errors, HTTP errors, refused connections and silence come back."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from alerts.channels import Channels, Delivery

ALIYUN_KEY = "LTAI5tTestKeyId0001"
ALIYUN_SECRET = "AliyunSecretNeverShown42"
TENCENT_ID = "AKIDTestSecretId000001"
TENCENT_KEY = "TencentKeyNeverShown4242"
PHONE = "13800138000"
OTHER_PHONE = "13900139000"


@dataclass
class Seen:
    """One request as the stand-in received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


Answer = Callable[[Seen], tuple[int, str]]


@dataclass
class StandIn:
    """A provider endpoint on 127.0.0.1: records each request and answers with `answer`."""

    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    answer: Answer = lambda _: (200, "{}")
    delay: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _handler(stand_in: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            parts = urlsplit(self.path)
            seen = Seen(
                method=self.command,
                path=parts.path,
                query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            stand_in.seen.append(seen)
            time.sleep(stand_in.delay)
            status, text = stand_in.answer(seen)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state = StandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    server.block_on_close = False  # a handler still sleeping must not hold the test up
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on (taken, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def send(
    url: str, title: str = "跌倒", body: str = "张三在卫生间跌倒，请尽快查看", **kw: float
) -> Delivery:
    return asyncio.run(Channels(**kw).send(url, title, body))


# --- the providers' checks, written out again here so the plugins are not their own judge ---


def aliyun_signature(params: dict[str, str], secret: str) -> str:
    def enc(value: str) -> str:
        return quote(value, safe="~")  # RFC 3986 unreserved characters stay

    query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()) if k != "Signature")
    to_sign = "GET&%2F&" + enc(query)
    digest = hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun(code: str = "OK", status: int = 200) -> Answer:
    """Aliyun's behaviour: a bad signature is a 400 SignatureDoesNotMatch, else `code`."""

    def answer(seen: Seen) -> tuple[int, str]:
        if seen.query.get("Signature") != aliyun_signature(seen.query, ALIYUN_SECRET):
            return 400, json.dumps(
                {"Code": "SignatureDoesNotMatch", "Message": "bad", "RequestId": "A0"}
            )
        reply = {"Code": code, "Message": "OK" if code == "OK" else "触发分钟级流控Permits:1"}
        return status, json.dumps({**reply, "BizId": "900619746", "RequestId": "A1"})

    return answer


def tencent_authorization(seen: Seen, secret_key: str) -> str:
    timestamp = int(seen.headers["x-tc-timestamp"])
    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    signed = {k: seen.headers[k] for k in ("content-type", "host", "x-tc-action")}
    canonical = "\n".join(
        [
            "POST",
            "/",
            "",
            "".join(f"{k}:{v.lower()}\n" for k, v in sorted(signed.items())),
            "content-type;host;x-tc-action",
            hashlib.sha256(seen.body).hexdigest(),
        ]
    )
    scope = f"{date}/sms/tc3_request"
    to_sign = "\n".join(
        ["TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = hmac.new(f"TC3{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    key = hmac.new(key, b"sms", hashlib.sha256).digest()
    key = hmac.new(key, b"tc3_request", hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"TC3-HMAC-SHA256 Credential={TENCENT_ID}/{scope}, "
        f"SignedHeaders=content-type;host;x-tc-action, Signature={signature}"
    )


def tencent(codes: dict[str, str] | None = None, error: str | None = None) -> Answer:
    """Tencent's behaviour: HTTP 200 always; a bad signature is AuthFailure.SignatureFailure."""

    def answer(seen: Seen) -> tuple[int, str]:
        if seen.headers.get("authorization") != tencent_authorization(seen, TENCENT_KEY):
            error_body = {"Code": "AuthFailure.SignatureFailure", "Message": "签名错误"}
            return 200, json.dumps({"Response": {"Error": error_body, "RequestId": "T0"}})
        if error:
            message = {"Code": error, "Message": "模板未审批或内容不匹配"}
            return 200, json.dumps({"Response": {"Error": message, "RequestId": "T2"}})
        phones = json.loads(seen.body)["PhoneNumberSet"]
        statuses = [
            {"PhoneNumber": p, "Code": (codes or {}).get(p, "Ok"), "Message": "send success"}
            for p in phones
        ]
        return 200, json.dumps({"Response": {"SendStatusSet": statuses, "RequestId": "T1"}})

    return answer


def assert_discreet(delivery: Delivery) -> None:
    """No secret and no full phone number ever reaches a detail."""
    for secret in (ALIYUN_SECRET, TENCENT_KEY, PHONE, OTHER_PHONE):
        assert secret not in delivery.detail


# --- Aliyun --------------------------------------------------------------------------------


def aliyun_url(stand_in_url: str, phones: str = PHONE, extra: str = "") -> str:
    return f"aliyunsms://{ALIYUN_KEY}:{ALIYUN_SECRET}@幸福社区/SMS_123456789/{phones}?endpoint={stand_in_url}{extra}"


def test_aliyun_delivery_sends_a_correctly_signed_sendsms(stand_in: StandIn) -> None:
    stand_in.answer = aliyun()
    delivery = send(aliyun_url(stand_in.url))
    assert delivery == Delivery(True, "sent via Aliyun SMS")
    [seen] = stand_in.seen
    assert (seen.method, seen.path) == ("GET", "/")
    query = seen.query
    assert query["Signature"] == aliyun_signature(query, ALIYUN_SECRET)
    assert {
        k: query[k] for k in ("Action", "Version", "Format", "SignatureMethod", "SignatureVersion")
    } == {
        "Action": "SendSms",
        "Version": "2017-05-25",
        "Format": "JSON",
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
    }
    assert query["AccessKeyId"] == ALIYUN_KEY
    assert query["PhoneNumbers"] == PHONE
    assert query["SignName"] == "幸福社区"
    assert query["TemplateCode"] == "SMS_123456789"
    assert query["RegionId"] == "cn-hangzhou"
    assert json.loads(query["TemplateParam"]) == {"content": "跌倒：张三在卫生间跌倒，请尽快查看"}
    sent_at = time.mktime(time.strptime(query["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(sent_at - time.time()) < 120
    assert ALIYUN_SECRET not in urlsplit(stand_in.url).query + json.dumps(query)


def test_aliyun_every_request_has_a_fresh_nonce(stand_in: StandIn) -> None:
    stand_in.answer = aliyun()
    assert send(aliyun_url(stand_in.url)).ok
    assert send(aliyun_url(stand_in.url)).ok
    nonces = {seen.query["SignatureNonce"] for seen in stand_in.seen}
    assert len(nonces) == 2


def test_aliyun_template_variable_names_are_the_operators(stand_in: StandIn) -> None:
    stand_in.answer = aliyun()
    assert send(
        aliyun_url(stand_in.url, extra="&param=msg&title_param=kind"), title="跌倒", body="张三"
    ).ok
    assert json.loads(stand_in.seen[0].query["TemplateParam"]) == {"kind": "跌倒", "msg": "张三"}


def test_aliyun_business_error_with_http_200_is_a_failure(stand_in: StandIn) -> None:
    stand_in.answer = aliyun(code="isv.BUSINESS_LIMIT_CONTROL")
    delivery = send(aliyun_url(stand_in.url))
    assert not delivery.ok
    assert "isv.BUSINESS_LIMIT_CONTROL" in delivery.detail
    assert "触发分钟级流控" in delivery.detail
    assert "138****8000" in delivery.detail
    assert delivery.recoverable  # flow control: worth another try
    assert_discreet(delivery)


def test_aliyun_wrong_secret_is_a_signature_failure(stand_in: StandIn) -> None:
    stand_in.answer = aliyun()
    url = aliyun_url(stand_in.url).replace(ALIYUN_SECRET, "NotTheRightSecret")
    delivery = send(url)
    assert not delivery.ok
    assert "SignatureDoesNotMatch" in delivery.detail
    assert "HTTP 400" in delivery.detail
    assert not delivery.recoverable


def test_aliyun_http_500_is_a_failure(stand_in: StandIn) -> None:
    stand_in.answer = lambda _: (500, "<html>Internal Server Error</html>")
    delivery = send(aliyun_url(stand_in.url))
    assert not delivery.ok
    assert "HTTP 500" in delivery.detail
    assert delivery.recoverable
    assert_discreet(delivery)


def test_aliyun_one_refused_phone_of_two_fails_the_delivery(stand_in: StandIn) -> None:
    ok = aliyun()
    limited = aliyun(code="isv.BUSINESS_LIMIT_CONTROL")
    stand_in.answer = lambda seen: (limited if seen.query["PhoneNumbers"] == OTHER_PHONE else ok)(
        seen
    )
    delivery = send(aliyun_url(stand_in.url, phones=f"{PHONE}/{OTHER_PHONE}"))
    assert not delivery.ok
    assert [seen.query["PhoneNumbers"] for seen in stand_in.seen] == [PHONE, OTHER_PHONE]
    assert "139****9000" in delivery.detail
    assert "138****8000" not in delivery.detail  # that one was delivered
    assert_discreet(delivery)


# --- Tencent Cloud -------------------------------------------------------------------------


def tencent_url(stand_in_url: str, phones: str = PHONE, extra: str = "") -> str:
    return (
        f"tencentsms://{TENCENT_ID}:{TENCENT_KEY}@1400000001/%E5%B9%B8%E7%A6%8F%E7%A4%BE%E5%8C%BA"
        f"/2000001/{phones}?region=ap-beijing&endpoint={stand_in_url}{extra}"
    )


def test_tencent_delivery_sends_a_correctly_signed_sendsms(stand_in: StandIn) -> None:
    stand_in.answer = tencent()
    delivery = send(tencent_url(stand_in.url))
    assert delivery == Delivery(True, "sent via Tencent Cloud SMS")
    [seen] = stand_in.seen
    assert (seen.method, seen.path) == ("POST", "/")
    assert seen.headers["authorization"] == tencent_authorization(seen, TENCENT_KEY)
    assert seen.headers["x-tc-action"] == "SendSms"
    assert seen.headers["x-tc-version"] == "2021-01-11"
    assert seen.headers["x-tc-region"] == "ap-beijing"
    assert seen.headers["host"] == f"127.0.0.1:{stand_in.port}"
    assert abs(int(seen.headers["x-tc-timestamp"]) - time.time()) < 120
    assert json.loads(seen.body) == {
        "PhoneNumberSet": ["+8613800138000"],
        "SmsSdkAppId": "1400000001",
        "SignName": "幸福社区",
        "TemplateId": "2000001",
        "TemplateParamSet": ["跌倒：张三在卫生间跌倒，请尽快查看"],
    }


def test_tencent_sends_all_phones_in_one_request_and_title_apart(stand_in: StandIn) -> None:
    stand_in.answer = tencent()
    assert send(tencent_url(stand_in.url, phones=f"{PHONE}/{OTHER_PHONE}", extra="&title=yes")).ok
    [seen] = stand_in.seen
    body = json.loads(seen.body)
    assert body["PhoneNumberSet"] == ["+8613800138000", "+8613900139000"]
    assert body["TemplateParamSet"] == ["跌倒", "张三在卫生间跌倒，请尽快查看"]


def test_tencent_response_error_is_a_failure(stand_in: StandIn) -> None:
    stand_in.answer = tencent(error="FailedOperation.TemplateIncorrectOrUnapproved")
    delivery = send(tencent_url(stand_in.url))
    assert not delivery.ok
    assert "FailedOperation.TemplateIncorrectOrUnapproved" in delivery.detail
    assert "+86138****8000" in delivery.detail
    assert not delivery.recoverable
    assert_discreet(delivery)


def test_tencent_refused_phone_in_send_status_set_is_a_failure(stand_in: StandIn) -> None:
    stand_in.answer = tencent(codes={"+8613900139000": "LimitExceeded.PhoneNumberDailyLimit"})
    delivery = send(tencent_url(stand_in.url, phones=f"{PHONE}/{OTHER_PHONE}"))
    assert not delivery.ok
    assert "+86139****9000: LimitExceeded.PhoneNumberDailyLimit" in delivery.detail
    assert_discreet(delivery)


def test_tencent_wrong_key_is_a_signature_failure(stand_in: StandIn) -> None:
    stand_in.answer = tencent()
    delivery = send(tencent_url(stand_in.url).replace(TENCENT_KEY, "NotTheRightKey"))
    assert not delivery.ok
    assert "AuthFailure.SignatureFailure" in delivery.detail
    assert not delivery.recoverable  # a wrong key stays wrong


def test_tencent_http_500_is_a_failure(stand_in: StandIn) -> None:
    stand_in.answer = lambda _: (500, "upstream exploded")
    delivery = send(tencent_url(stand_in.url))
    assert not delivery.ok
    assert "HTTP 500" in delivery.detail
    assert delivery.recoverable  # the provider was broken, not the request


# --- any apprise URL: json:// as a WeChat gateway stand-in -----------------------------------


def test_json_receiver_gets_title_and_message(stand_in: StandIn) -> None:
    delivery = send(f"json://127.0.0.1:{stand_in.port}/wechat/o6_bm", title="跌倒", body="张三")
    assert delivery == Delivery(True, "sent via JSON")
    [seen] = stand_in.seen
    assert (seen.method, seen.path) == ("POST", "/wechat/o6_bm")
    payload = json.loads(seen.body)
    assert (payload["title"], payload["message"]) == ("跌倒", "张三")


def test_json_receiver_http_500_is_a_failure(stand_in: StandIn) -> None:
    stand_in.answer = lambda _: (500, "{}")
    delivery = send(f"json://127.0.0.1:{stand_in.port}/wechat/o6_bm")
    assert not delivery.ok
    assert "500" in delivery.detail


# --- nobody there, nobody answering, nobody known ---------------------------------------------


@pytest.mark.parametrize("kind", ["aliyun", "tencent", "json"])
def test_refused_connection_is_a_failure_that_says_so(kind: str, closed_port: int) -> None:
    endpoint = f"http://127.0.0.1:{closed_port}"
    url = {
        "aliyun": aliyun_url(endpoint),
        "tencent": tencent_url(endpoint),
        "json": f"json://127.0.0.1:{closed_port}/wechat/o6_bm",
    }[kind]
    delivery = send(url)
    assert not delivery.ok
    assert delivery.recoverable
    assert "connect" in delivery.detail.lower()
    assert_discreet(delivery)


def test_silent_endpoint_times_out(stand_in: StandIn) -> None:
    stand_in.delay = 3.0
    started = time.monotonic()
    delivery = send(f"json://127.0.0.1:{stand_in.port}/wechat/o6_bm", timeout=1.0)
    assert not delivery.ok
    assert delivery.recoverable
    assert delivery.detail == "JSON: no answer within 1s"
    assert time.monotonic() - started < 2.5


def test_url_apprise_does_not_know_is_a_failure() -> None:
    delivery = send("nosuch://127.0.0.1/x")
    assert delivery == Delivery(
        False, "apprise does not accept this URL: nosuch (unknown scheme)", recoverable=False
    )
