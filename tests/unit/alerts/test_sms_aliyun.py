"""The Aliyun SMS plugin without a network: signing against the published examples,
the request it builds, judging replies (recoverable or not), its URL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import apprise
import pytest

from alerts.channels import register_plugins
from alerts.sms import aliyun as sms_aliyun
from alerts.sms.aliyun import NotifyAliyunSMS

register_plugins()

# --- Aliyun RPC signature (SignatureVersion 1.0, HMAC-SHA1) -------------------------------

# Aliyun's signature-mechanism example ("API 签名机制 示例", DescribeRegions; mirrored at
# https://developer.aliyun.com/ask/210168). The parameter name is spelled `TimeStamp`
# there, and the published signature is the one for that spelling.
ALIYUN_ECS_EXAMPLE = {
    "TimeStamp": "2016-02-23T12:46:24Z",
    "Format": "XML",
    "AccessKeyId": "testid",
    "Action": "DescribeRegions",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "Version": "2014-05-26",
    "SignatureVersion": "1.0",
}
ALIYUN_ECS_STRING_TO_SIGN = (
    "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
    "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"
    "%26SignatureVersion%3D1.0%26TimeStamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
)

# Aliyun SMS's own example (dysmsapi "HTTP协议及签名", https://help.aliyun.com/document_detail/101343.htm,
# mirrored at https://developer.aliyun.com/ask/218522): a Chinese SignName and a JSON
# TemplateParam, both of which must be UTF-8 percent-encoded twice in the string to sign.
ALIYUN_SMS_EXAMPLE = {
    "AccessKeyId": "testId",
    "Action": "SendSms",
    "Format": "XML",
    "OutId": "123",
    "PhoneNumbers": "15300000001",
    "RegionId": "cn-hangzhou",
    "SignName": "阿里云短信测试专用",
    "SignatureMethod": "HMAC-SHA1",
    "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
    "SignatureVersion": "1.0",
    "TemplateCode": "SMS_71390007",
    "TemplateParam": '{"customer":"test"}',
    "Timestamp": "2017-07-12T02:42:19Z",
    "Version": "2017-05-25",
}


def test_aliyun_signature_matches_the_published_rpc_example() -> None:
    assert sms_aliyun.string_to_sign("GET", ALIYUN_ECS_EXAMPLE) == ALIYUN_ECS_STRING_TO_SIGN
    assert (
        sms_aliyun.sign("GET", ALIYUN_ECS_EXAMPLE, "testsecret") == "CT9X0VtwR86fNWSnsc6v8YGOjuE="
    )


def test_aliyun_signature_matches_the_published_sendsms_example() -> None:
    to_sign = sms_aliyun.string_to_sign("GET", ALIYUN_SMS_EXAMPLE)
    assert "SignName%3D%25E9%2598%25BF%25E9%2587%258C" in to_sign  # 阿里 encoded twice
    assert "TemplateParam%3D%257B%2522customer%2522%253A%2522test%2522%257D" in to_sign
    assert (
        sms_aliyun.sign("GET", ALIYUN_SMS_EXAMPLE, "testSecret") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    )


def test_aliyun_signature_depends_on_secret_method_and_every_parameter() -> None:
    published = "zJDF+Lrzhj/ThnlvIToysFRq6t4="
    assert sms_aliyun.sign("GET", ALIYUN_SMS_EXAMPLE, "testsecret") != published
    assert sms_aliyun.sign("POST", ALIYUN_SMS_EXAMPLE, "testSecret") != published
    changed = {**ALIYUN_SMS_EXAMPLE, "PhoneNumbers": "15300000002"}
    assert sms_aliyun.sign("GET", changed, "testSecret") != published
    # Signature itself never takes part in the string to sign
    with_signature = {**ALIYUN_SMS_EXAMPLE, "Signature": "anything"}
    assert sms_aliyun.sign("GET", with_signature, "testSecret") == published


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),  # space is %20, never +
        ("a*b", "a%2Ab"),
        ("a~b-_.", "a~b-_."),  # unreserved characters stay
        ("a+b/c=d&e", "a%2Bb%2Fc%3Dd%26e"),
        ("签名", "%E7%AD%BE%E5%90%8D"),
    ],
)
def test_aliyun_percent_encoding_follows_the_pop_rules(raw: str, encoded: str) -> None:
    assert sms_aliyun.percent_encode(raw) == encoded


def test_aliyun_request_url_carries_exactly_the_signed_parameters() -> None:
    params = sms_aliyun.send_sms_params(
        access_key_id="LTAI-test",
        sign_name="幸福社区",
        template_code="SMS_123456789",
        phone="13800138000",
        template_param={"content": "张三 跌倒 * 请速查看"},
        region="cn-hangzhou",
        timestamp=datetime(2024, 5, 1, 8, 0, 5, tzinfo=UTC),
        nonce="n-1",
    )
    assert params["Timestamp"] == "2024-05-01T08:00:05Z"
    assert json.loads(params["TemplateParam"]) == {"content": "张三 跌倒 * 请速查看"}
    url = sms_aliyun.signed_url("http://127.0.0.1:9/", params, "s3cret")
    sent = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    signature = sent.pop("Signature")
    assert sent == params
    assert signature == sms_aliyun.sign("GET", params, "s3cret")
    assert "+" not in urlsplit(url).query  # a + would be read back as a space


# --- judging replies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "ok", "words"),
    [
        (
            200,
            '{"Code":"OK","Message":"OK","BizId":"900619746","RequestId":"R1"}',
            True,
            ["BizId=900619746", "R1"],
        ),
        (
            200,
            '{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"触发分钟级流控Permits:1","RequestId":"R2"}',
            False,
            ["isv.BUSINESS_LIMIT_CONTROL", "触发分钟级流控", "HTTP 200", "R2"],
        ),
        (
            400,
            '{"Code":"SignatureDoesNotMatch","Message":"bad","RequestId":"R3"}',
            False,
            ["SignatureDoesNotMatch", "HTTP 400"],
        ),
        (500, "<html>Internal Server Error</html>", False, ["HTTP 500", "not a JSON reply"]),
        (503, '{"Code":"OK"}', False, ["HTTP 503"]),  # an OK body does not excuse a 5xx
        (200, "[]", False, ["not a JSON reply"]),
    ],
)
def test_aliyun_reply(status: int, text: str, ok: bool, words: list[str]) -> None:
    reply = sms_aliyun.parse_reply(status, text)
    assert reply.ok is ok
    for word in words:
        assert word in reply.detail


# --- the URL -------------------------------------------------------------------------------


def _plugin(url: str) -> object:
    service = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    assert service is not None
    return service


def test_aliyun_url_parses_into_its_parts() -> None:
    url = (
        "aliyunsms://LTAIkey:se%2Fcr%40et@幸福社区/SMS_123456789/13800138000/+8613900139000"
        "?param=msg&title_param=kind&region=cn-shanghai&maxlen=35&endpoint=http://127.0.0.1:9"
    )
    plugin = _plugin(url)
    assert isinstance(plugin, NotifyAliyunSMS)
    assert plugin.access_key_id == "LTAIkey"
    assert plugin.access_key_secret == "se/cr@et"
    assert plugin.sign_name == "幸福社区"
    assert plugin.template == "SMS_123456789"
    assert plugin.phones == ["13800138000", "13900139000"]  # Aliyun wants no +86 at home
    assert (plugin.param, plugin.title_param, plugin.region) == ("msg", "kind", "cn-shanghai")
    assert plugin.maxlen == 35
    assert plugin.endpoint == "http://127.0.0.1:9/"
    assert len(plugin) == 2


def test_aliyun_sign_name_may_be_raw_or_percent_encoded() -> None:
    raw = _plugin("aliyunsms://k:s@幸福 社区/SMS_1/13800138000")
    encoded = _plugin("aliyunsms://k:s@%E5%B9%B8%E7%A6%8F%20%E7%A4%BE%E5%8C%BA/SMS_1/13800138000")
    assert isinstance(raw, NotifyAliyunSMS)
    assert isinstance(encoded, NotifyAliyunSMS)
    assert raw.sign_name == encoded.sign_name == "幸福 社区"


def test_aliyun_url_defaults() -> None:
    plugin = _plugin("aliyunsms://k:s@Sign/SMS_1/13800138000")
    assert isinstance(plugin, NotifyAliyunSMS)
    assert plugin.endpoint == "https://dysmsapi.aliyuncs.com/"
    assert (plugin.param, plugin.title_param, plugin.region, plugin.maxlen) == (
        "content",
        None,
        "cn-hangzhou",
        None,
    )


def test_aliyun_template_values() -> None:
    plugin = _plugin("aliyunsms://k:s@Sign/SMS_1/13800138000")
    assert isinstance(plugin, NotifyAliyunSMS)
    assert plugin.template_values("跌倒", "张三在卫生间") == {"content": "跌倒：张三在卫生间"}
    assert plugin.template_values("", "张三在卫生间") == {"content": "张三在卫生间"}
    split = _plugin("aliyunsms://k:s@Sign/SMS_1/13800138000?title_param=kind&maxlen=4")
    assert isinstance(split, NotifyAliyunSMS)
    assert split.template_values("跌倒", "张三在卫生间") == {"kind": "跌倒", "content": "张三在…"}


def test_aliyun_private_url_hides_secret_and_numbers_and_the_full_url_round_trips() -> None:
    plugin = _plugin("aliyunsms://LTAIkey:TopSecret99@幸福社区/SMS_1/13800138000?maxlen=20")
    assert isinstance(plugin, NotifyAliyunSMS)
    private = plugin.url(privacy=True)
    assert "TopSecret99" not in private
    assert "13800138000" not in private
    assert "138****8000" in private
    again = _plugin(plugin.url(privacy=False))
    assert isinstance(again, NotifyAliyunSMS)
    assert (again.access_key_secret, again.sign_name, again.phones, again.maxlen) == (
        "TopSecret99",
        "幸福社区",
        ["13800138000"],
        20,
    )


@pytest.mark.parametrize(
    ("status", "text", "recoverable"),
    [
        (200, '{"Code":"isv.BUSINESS_LIMIT_CONTROL","Message":"触发分钟级流控"}', True),
        (200, '{"Code":"isp.SYSTEM_ERROR","Message":"系统错误"}', True),
        (400, '{"Code":"Throttling.User","Message":"Request was denied"}', True),
        (500, "<html>Internal Server Error</html>", True),
        (503, '{"Code":"OK"}', True),
        (400, '{"Code":"SignatureDoesNotMatch","Message":"bad"}', False),
        (200, '{"Code":"isv.MOBILE_NUMBER_ILLEGAL","Message":"非法手机号"}', False),
        (200, '{"Code":"isv.SMS_TEMPLATE_ILLEGAL","Message":"模板不合法"}', False),
        (200, '{"Code":"isv.AMOUNT_NOT_ENOUGH","Message":"账户余额不足"}', False),
        (404, "<html>Not Found</html>", False),
    ],
)
def test_aliyun_reply_says_whether_a_retry_could_help(
    status: int, text: str, recoverable: bool
) -> None:
    reply = sms_aliyun.parse_reply(status, text)
    assert not reply.ok
    assert reply.recoverable is recoverable
