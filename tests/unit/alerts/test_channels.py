"""Channel plumbing without a network: provider signing against published examples,
URL parsing of the two SMS plugins, reply judging, `channel_url` and `check_url`."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import apprise
import pytest

from alerts import sms_aliyun, sms_tencent
from alerts.channels import ChannelTemplateError, channel_url, check_url, redact, register_plugins
from alerts.sms_aliyun import NotifyAliyunSMS
from alerts.sms_tencent import NotifyTencentSMS

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


# --- judging provider replies ------------------------------------------------------------


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


# --- phone numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("13800138000", "+8613800138000"),
        ("+8613800138000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+85291234567", "+85291234567"),
    ],
)
def test_mobile_numbers_are_normalised(raw: str, e164: str) -> None:
    assert sms_aliyun.e164_mobile(raw) == e164


@pytest.mark.parametrize(
    "raw", ["12345", "10086", "23800138000", "+861012345678", "138001380001", "phone"]
)
def test_other_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a mobile number"):
        sms_aliyun.e164_mobile(raw)


def test_phone_masks_keep_head_and_tail() -> None:
    assert sms_aliyun.mask_phone("13800138000") == "138****8000"
    assert sms_aliyun.mask_phone("+8613800138000") == "+86138****8000"
    assert sms_aliyun.mask_phone("123") == "****"


# --- the plugins' URLs ---------------------------------------------------------------------


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
    ("url", "reason"),
    [
        ("aliyunsms://Sign/SMS_1/13800138000", "AccessKeyId:AccessKeySecret"),
        ("aliyunsms://key@Sign/SMS_1/13800138000", "AccessKeyId:AccessKeySecret"),
        ("aliyunsms://k:s@Sign/13800138000", "at least one phone"),
        ("aliyunsms://k:s@Sign/SMS_1", "at least one phone"),
        ("aliyunsms://k:s@Sign/SMS-1/13800138000", "template code"),
        ("aliyunsms://k:s@Sign/SMS_1/12345", "not a mobile number"),
        ("aliyunsms://k:s@Sign/SMS_1/13800138000?maxlen=0", "maxlen"),
        ("aliyunsms://k:s@Sign/SMS_1/13800138000?endpoint=ftp://x", "endpoint"),
        ("tencentsms://AKID:KEY@app/Sign/2000001/13800138000", "numeric SdkAppId"),
        ("tencentsms://AKID:KEY@1400000001/Sign/SMS_1/13800138000", "numeric TemplateId"),
        ("tencentsms://AKID:KEY@1400000001/Sign/2000001", "at least one phone"),
        ("tencentsms://AKID@1400000001/Sign/2000001/13800138000", "SecretId:SecretKey"),
    ],
)
def test_unusable_sms_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    problem = check_url(url)
    assert problem is not None
    assert problem.startswith("apprise does not accept this URL: ")
    assert reason in problem
    assert apprise.Apprise().add(url) is False


# --- channel_url, check_url, redact ---------------------------------------------------------


def test_channel_url_fills_placeholders_url_safely() -> None:
    template = "aliyunsms://KEY:SECRET@签名/SMS_123/{phone}"
    assert (
        channel_url(template, phone="13800138000")
        == "aliyunsms://KEY:SECRET@签名/SMS_123/13800138000"
    )
    assert channel_url(template, phone="+8613800138000").endswith("/%2B8613800138000")
    assert channel_url("json://127.0.0.1:9/wechat/{wechat}", wechat="o6_bm/x y?z&") == (
        "json://127.0.0.1:9/wechat/o6_bm%2Fx%20y%3Fz%26"
    )
    assert channel_url("wecombot://KEY", phone="13800138000") == "wecombot://KEY"  # nothing to fill


def test_a_filled_template_reaches_the_plugin_intact() -> None:
    url = channel_url(
        "tencentsms://AKID:KEY@1400000001/社区/2000001/{phone}", phone="+8613800138000"
    )
    plugin = _plugin(url)
    assert isinstance(plugin, NotifyTencentSMS)
    assert plugin.phones == ["+8613800138000"]
    filled = channel_url("aliyunsms://k:s@Sign/SMS_1/{phone}", phone="138 0013 8000")
    aliyun = _plugin(filled)
    assert isinstance(aliyun, NotifyAliyunSMS)
    assert aliyun.phones == ["13800138000"]


@pytest.mark.parametrize("values", [{}, {"phone": ""}, {"wechat": "o6_bm"}])
def test_channel_url_refuses_a_placeholder_without_a_value(values: dict[str, str]) -> None:
    with pytest.raises(ChannelTemplateError, match=r"\{phone\}"):
        channel_url("aliyunsms://k:s@Sign/SMS_1/{phone}", **values)


@pytest.mark.parametrize(
    "url",
    [
        "aliyunsms://LTAIkey:secret@签名/SMS_123/13800138000",
        "tencentsms://AKID:KEY@1400000001/社区/2000001/13800138000",
        "json://127.0.0.1:9/wechat/o6_bm",
        "wecombot://0123456789abcdef0123456789abcdef",
        "schan://SCT1234567890abcdef",
        "wxpusher://AT_abcdefghijklmnop/UID_abcdefghijklmnop",
    ],
)
def test_check_url_accepts_working_urls(url: str) -> None:
    assert check_url(url) is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("nosuch://x", ["nosuch", "unknown scheme"]),
        ("not a url", ["not a channel URL"]),
        ("wecombot://", ["wecombot"]),
    ],
)
def test_check_url_explains_what_is_wrong(url: str, words: list[str]) -> None:
    problem = check_url(url)
    assert problem is not None
    for word in words:
        assert word in problem


def test_redact_blanks_keys_and_masks_phones_but_keeps_hosts() -> None:
    url = "wecombot://0123456789abcdef0123456789abcdef"
    text = "bad key 0123456789abcdef0123456789abcdef for 13800138000 at 127.0.0.1:9"
    assert redact(text, url) == "bad key **** for 138****8000 at 127.0.0.1:9"
    secret_url = "aliyunsms://LTAIkey:Top%2FSecret@Sign/SMS_1/13800138000"
    assert "Top/Secret" not in redact("oops Top/Secret and Top%2FSecret", secret_url)
    assert "Top%2FSecret" not in redact("oops Top%2FSecret", secret_url)
