"""What the SMS plugins share: phone numbers, their masks, the URLs both refuse."""

from __future__ import annotations

import apprise
import pytest

from alerts.channels import check_url, register_plugins
from alerts.sms.base import mask_number, transient_status
from core.phones import e164_mobile

register_plugins()

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
    assert e164_mobile(raw) == e164


@pytest.mark.parametrize(
    "raw", ["12345", "10086", "23800138000", "+861012345678", "138001380001", "phone"]
)
def test_other_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValueError, match="not a mobile number"):
        e164_mobile(raw)


def test_phone_masks_keep_head_and_tail() -> None:
    assert mask_number("13800138000") == "138****8000"
    assert mask_number("+8613800138000") == "+86138****8000"
    assert mask_number("123") == "****"


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


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13800138000", "138****8000"),  # Aliyun's form at home
        ("+8613800138000", "+86138****8000"),  # Tencent's
        ("85291234567", "852****4567"),  # Aliyun's form abroad
        ("+85291234567", "852****4567"),
        ("+4915112345678", "491****5678"),
        ("1234567", "****"),
    ],
)
def test_every_sms_target_is_masked(phone: str, masked: str) -> None:
    assert mask_number(phone) == masked


@pytest.mark.parametrize(
    ("status", "transient"),
    [(200, False), (400, False), (403, False), (404, False), (429, True), (500, True), (503, True)],
)
def test_only_a_busy_or_broken_provider_is_worth_another_try(status: int, transient: bool) -> None:
    assert transient_status(status) is transient
