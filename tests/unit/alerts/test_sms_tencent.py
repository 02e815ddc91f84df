"""The Tencent Cloud SMS plugin without a network: TC3 signing against the published
examples, the request it builds, judging replies (recoverable or not), its URL."""

from __future__ import annotations

import hashlib
import json

import apprise
import pytest

from alerts.channels import register_plugins
from alerts.sms import tencent as sms_tencent
from alerts.sms.tencent import NotifyTencentSMS

register_plugins()

# --- Tencent Cloud TC3-HMAC-SHA256 -------------------------------------------------------

# Tencent's API 3.0 "签名方法 v3" example (CVM DescribeInstances, 2019-02-25), with the
# key values exactly as the documentation prints them (asterisks included); see e.g.
# https://cloud.tencent.com/document/api/362/4208. An earlier revision signed only
# content-type and host; the current one adds x-tc-action.
TC_SECRET_ID = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******"
TC_SECRET_KEY = "Gu5t9xGARNpq86cd98joQYCN3*******"
TC_PAYLOAD = (
    b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'
)
TC_TIMESTAMP = 1551113065
TC_HEADERS = {"Content-Type": "application/json; charset=utf-8", "Host": "cvm.tencentcloudapi.com"}


def test_tencent_signature_matches_the_published_example() -> None:
    assert hashlib.sha256(TC_PAYLOAD).hexdigest() == (
        "35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    request = sms_tencent.canonical_request(
        method="POST", query="", headers=TC_HEADERS, payload=TC_PAYLOAD
    )
    assert request == (
        "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n"
        "\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
    )
    to_sign = sms_tencent.string_to_sign(TC_TIMESTAMP, "cvm", request)
    assert to_sign == (
        "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n"
        "5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
    )
    assert sms_tencent.signature(TC_SECRET_KEY, TC_TIMESTAMP, "cvm", to_sign) == (
        "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )
    header = sms_tencent.authorization(
        secret_id=TC_SECRET_ID,
        secret_key=TC_SECRET_KEY,
        service="cvm",
        headers=TC_HEADERS,
        payload=TC_PAYLOAD,
        timestamp=TC_TIMESTAMP,
    )
    assert header == (
        "TC3-HMAC-SHA256"
        " Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request,"
        " SignedHeaders=content-type;host,"
        " Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
    )


def test_tencent_signature_matches_the_current_example_with_the_action_header() -> None:
    headers = {**TC_HEADERS, "X-TC-Action": "DescribeInstances"}
    request = sms_tencent.canonical_request(
        method="POST", query="", headers=headers, payload=TC_PAYLOAD
    )
    assert "x-tc-action:describeinstances\n" in request  # values lower-cased too
    assert hashlib.sha256(request.encode()).hexdigest() == (
        "7019a55be8395899b900fb5564e4200d984910f34794a27cb3fb7d10ff6a1e84"
    )
    header = sms_tencent.authorization(
        secret_id=TC_SECRET_ID,
        secret_key=TC_SECRET_KEY,
        service="cvm",
        headers=headers,
        payload=TC_PAYLOAD,
        timestamp=TC_TIMESTAMP,
    )
    assert header.endswith(
        "SignedHeaders=content-type;host;x-tc-action,"
        " Signature=be4f67d323c78ab9acb7395e43c0dbcf822a9cfac32fea2449a7bc7726b770a3"
    )


def test_tencent_credential_date_is_the_utc_date() -> None:
    # 2019-02-26 00:44:25 in Beijing is still the 25th in the credential scope
    assert sms_tencent.credential_date(TC_TIMESTAMP) == "2019-02-25"
    assert sms_tencent.credential_date(TC_TIMESTAMP + 24 * 3600) == "2019-02-26"


def test_tencent_request_headers_sign_what_is_sent() -> None:
    payload = sms_tencent.send_sms_payload(
        sdk_app_id="1400000001",
        sign_name="幸福社区",
        template_id="2000001",
        phones=["+8613800138000"],
        template_params=["张三 跌倒"],
    )
    assert json.loads(payload) == {
        "PhoneNumberSet": ["+8613800138000"],
        "SmsSdkAppId": "1400000001",
        "SignName": "幸福社区",
        "TemplateId": "2000001",
        "TemplateParamSet": ["张三 跌倒"],
    }
    headers = sms_tencent.request_headers(
        secret_id="AKID-test",
        secret_key="key-test",
        host="sms.tencentcloudapi.com",
        region="ap-beijing",
        payload=payload,
        timestamp=1700000000,
    )
    assert headers["X-TC-Action"] == "SendSms"
    assert headers["X-TC-Version"] == "2021-01-11"
    assert headers["X-TC-Region"] == "ap-beijing"
    assert headers["X-TC-Timestamp"] == "1700000000"
    signed = {k: headers[k] for k in ("Content-Type", "Host", "X-TC-Action")}
    assert headers["Authorization"] == sms_tencent.authorization(
        secret_id="AKID-test",
        secret_key="key-test",
        service="sms",
        headers=signed,
        payload=payload,
        timestamp=1700000000,
    )
    assert "Credential=AKID-test/2023-11-14/sms/tc3_request" in headers["Authorization"]


# --- judging replies ----------------------------------------------------------------------


def _tencent(response: object) -> str:
    return json.dumps({"Response": response})


@pytest.mark.parametrize(
    ("status", "text", "ok", "accepted", "words"),
    [
        (
            200,
            _tencent(
                {
                    "SendStatusSet": [
                        {"PhoneNumber": "+8613800138000", "Code": "Ok", "Message": "send success"}
                    ],
                    "RequestId": "T1",
                }
            ),
            True,
            ("+8613800138000",),
            ["T1"],
        ),
        (
            200,
            _tencent(
                {
                    "Error": {"Code": "AuthFailure.SignatureFailure", "Message": "签名错误"},
                    "RequestId": "T2",
                }
            ),
            False,
            (),
            ["AuthFailure.SignatureFailure", "签名错误", "T2"],
        ),
        (
            200,
            _tencent(
                {
                    "SendStatusSet": [
                        {"PhoneNumber": "+8613800138000", "Code": "Ok", "Message": "send success"},
                        {
                            "PhoneNumber": "+8613900139000",
                            "Code": "LimitExceeded.PhoneNumberDailyLimit",
                            "Message": "单个手机号日下发条数超过设定的上限",
                        },
                    ],
                    "RequestId": "T3",
                }
            ),
            False,
            ("+8613800138000",),
            ["+86139****9000", "LimitExceeded.PhoneNumberDailyLimit"],
        ),
        (200, _tencent({"RequestId": "T4"}), False, (), ["no SendStatusSet"]),
        (502, "Bad Gateway", False, (), ["HTTP 502"]),
    ],
)
def test_tencent_reply(
    status: int, text: str, ok: bool, accepted: tuple[str, ...], words: list[str]
) -> None:
    reply = sms_tencent.parse_reply(status, text)
    assert reply.ok is ok
    assert reply.accepted == accepted
    for word in words:
        assert word in reply.detail
    assert "13900139000" not in reply.detail


# --- the URL -------------------------------------------------------------------------------


def _plugin(url: str) -> object:
    service = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    assert service is not None
    return service


def test_tencent_url_parses_into_its_parts() -> None:
    url = (
        "tencentsms://AKIDabc:KeyXyz@1400000001/%E8%85%BE%E8%AE%AF%20%E4%BA%91/2000001"
        "/13800138000/%2B85291234567?region=ap-beijing&title=yes&endpoint=http://127.0.0.1:9/sms"
    )
    plugin = _plugin(url)
    assert isinstance(plugin, NotifyTencentSMS)
    assert (plugin.secret_id, plugin.secret_key) == ("AKIDabc", "KeyXyz")
    assert (plugin.sdk_app_id, plugin.sign_name, plugin.template) == (
        "1400000001",
        "腾讯 云",
        "2000001",
    )
    assert plugin.phones == ["+8613800138000", "+85291234567"]
    assert (plugin.region, plugin.title_param) == ("ap-beijing", True)
    assert plugin.endpoint == "http://127.0.0.1:9/sms"
    assert plugin.template_values("跌倒", "张三") == ["跌倒", "张三"]
    assert "KeyXyz" not in plugin.url(privacy=True)


def test_tencent_url_defaults_and_round_trip() -> None:
    plugin = _plugin("tencentsms://AKID:KEY@1400000001/社区/2000001/13800138000")
    assert isinstance(plugin, NotifyTencentSMS)
    assert plugin.endpoint == "https://sms.tencentcloudapi.com/"
    assert (plugin.region, plugin.title_param) == ("ap-guangzhou", False)
    assert plugin.template_values("跌倒", "张三") == ["跌倒：张三"]
    again = _plugin(plugin.url())
    assert isinstance(again, NotifyTencentSMS)
    assert (again.sign_name, again.phones) == ("社区", ["+8613800138000"])


@pytest.mark.parametrize(
    ("status", "text", "recoverable"),
    [
        (200, _tencent({"Error": {"Code": "InternalError.Timeout"}, "RequestId": "T"}), True),
        (200, _tencent({"Error": {"Code": "RequestLimitExceeded"}, "RequestId": "T"}), True),
        (502, "Bad Gateway", True),
        (200, _tencent({"Error": {"Code": "AuthFailure.SignatureFailure"}}), False),
        (
            200,
            _tencent({"Error": {"Code": "FailedOperation.TemplateIncorrectOrUnapproved"}}),
            False,
        ),
        (
            200,
            _tencent(
                {
                    "SendStatusSet": [
                        {"PhoneNumber": "+8613800138000", "Code": "Ok"},
                        {
                            "PhoneNumber": "+8613900139000",
                            "Code": "LimitExceeded.PhoneNumberThirtySecondLimit",
                        },
                    ]
                }
            ),
            True,
        ),
        (
            200,
            _tencent(
                {
                    "SendStatusSet": [
                        {
                            "PhoneNumber": "+8613800138000",
                            "Code": "LimitExceeded.PhoneNumberDailyLimit",
                        },
                        {
                            "PhoneNumber": "+8613900139000",
                            "Code": "LimitExceeded.PhoneNumberThirtySecondLimit",
                        },
                    ]
                }
            ),
            False,  # one number refused for the day: retrying cannot deliver the whole message
        ),
        (
            200,
            _tencent(
                {
                    "SendStatusSet": [
                        {
                            "PhoneNumber": "+8613800138000",
                            "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                        }
                    ]
                }
            ),
            False,
        ),
    ],
)
def test_tencent_reply_says_whether_a_retry_could_help(
    status: int, text: str, recoverable: bool
) -> None:
    reply = sms_tencent.parse_reply(status, text)
    assert not reply.ok
    assert reply.recoverable is recoverable
