"""Channel plumbing without a network: `channel_url`, `check_url`, `redact`."""

from __future__ import annotations

import apprise
import pytest

from alerts.channels import ChannelTemplateError, channel_url, check_url, redact, register_plugins
from alerts.sms.aliyun import NotifyAliyunSMS
from alerts.sms.tencent import NotifyTencentSMS

register_plugins()


def _plugin(url: str) -> object:
    service = apprise.Apprise.instantiate(url, suppress_exceptions=False)
    assert service is not None
    return service


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
