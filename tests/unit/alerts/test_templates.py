"""Alert messages: the issue's example word for word, every rule for every audience, privacy."""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from alerts.templates import (
    Audience,
    Lang,
    MessageContext,
    MessageKind,
    bundle,
    digest,
    render,
    sms_length,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
AT = int(datetime(2025, 6, 12, 14, 32, tzinfo=SHANGHAI).timestamp() * 1000)
URL = "https://cw.example.cn/a/7Kx2Qp"
NOTES = (
    "高血压，糖尿病，独居，右腿行动不便，女儿在外地工作每周回来一次，对青霉素过敏，装有心脏起搏器"
)
PHONE = "13800138000"

# Every rule of docs/rules.md, with a value and limit as the engine sends them.
RULES: dict[str, tuple[str, float | None, float | None]] = {
    "hr_high": ("warning", 131, 120),
    "hr_low": ("warning", 42, 45),
    "spo2_low": ("warning", 88, 90),
    "spo2_critical": ("critical", 82, 85),
    "sbp_high": ("warning", 186, 180),
    "temp_high": ("warning", 38.9, 38.5),
    "temp_low": ("warning", 34.6, 35.0),
    "news2": ("critical", 7, None),
    "baseline_hr": ("warning", 96, 72),
    "baseline_spo2": ("warning", 93, 97),
    "fall": ("critical", 0.92, None),
    "sos": ("critical", None, None),
    "inactivity": ("warning", 265, 240),
    "no_data": ("warning", 1800, 180),
    "offline": ("warning", None, None),
    "not_worn": ("warning", None, None),
    "battery_low": ("warning", 12, 15),
    "wandering": ("warning", 1250, 500),
    "bin_full": ("warning", 95, 90),
    "bin_full_soon": ("info", 2.5, 4),
    "bin_fire": ("critical", 65.2, 60),
    "lid_jam": ("warning", None, None),
    "sorting_accuracy": ("info", 0.78, 0.85),
}
BIN_RULES = {"bin_full", "bin_full_soon", "bin_fire", "lid_jam", "sorting_accuracy"}

FALL = MessageContext(
    rule="fall",
    severity="critical",
    kind=MessageKind.RAISED,
    at_ms=AT,
    resident_name="张建国",
    gender="男",
    birth_year=1945,
    community="幸福小区",
    building="3栋",
    room="201",
    worker_names=("王芳",),
)
ISSUE_TEXT = (
    "【紧急】张大爷（幸福小区3栋201）疑似跌倒，14:32。请立即联系；网格员王芳已同时收到通知。"
)


def rich(rule: str, kind: MessageKind, **changes: object) -> MessageContext:
    """A context with everything filled in, long where the registry allows it."""
    severity, value, limit = RULES.get(rule, ("warning", 3.5, None))
    subject: dict[str, object] = (
        {"device_id": "BIN-0012"}
        if rule in BIN_RULES
        else {
            "resident_name": "张建国",
            "gender": "男",
            "birth_year": 1945,
            "unit": "3单元",
            "room": "1502",
            "health_notes": NOTES,
            "device_id": "WB-000123",
        }
    )
    ctx = MessageContext(
        rule=rule,
        severity=severity,
        kind=kind,
        at_ms=AT,
        community="幸福家园第二社区",
        building="12号楼",
        value=value,
        limit=limit,
        worker_names=("王芳", "李强"),
        acked_by="王芳",
        # A person's note comes with an acknowledgement or a resolve.
        note=(
            f"已电话联系，正在上门，张建国家属电话{PHONE}"
            if rule not in BIN_RULES
            else f"已到场，联系{PHONE}"
        )
        if kind in (MessageKind.ACKNOWLEDGED, MessageKind.RESOLVED)
        else None,
        ack_url=URL,
        waited_min=15,
        flapping=True,
        grouped_rules=("inactivity",) if rule == "fall" else (),
        notice_title="暴雨橙色预警",
        notice_text=f"今晚到明早有大暴雨，请提醒独居老人关好门窗、不要外出。值班电话{PHONE}",
        residents_to_check=("张建国", "李秀英", "王桂兰", "欧阳明"),
        **subject,  # type: ignore[arg-type]
    )
    return replace(ctx, **changes)  # type: ignore[arg-type]


# --- the issue's example --------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "body", "segments"),
    [
        ({}, ISSUE_TEXT, 1),
        ({"ack_url": URL}, f"{ISSUE_TEXT} 确认：{URL}", 2),  # the link may add a segment
        ({"ack_code": "1"}, f"{ISSUE_TEXT} 回复1确认", 1),
        ({"ack_url": URL, "ack_code": "1"}, f"{ISSUE_TEXT} 回复1或确认：{URL}", 2),
    ],
)
def test_issue_example(changes: dict[str, str], body: str, segments: int) -> None:
    title, text = render(replace(FALL, **changes), Audience.FAMILY)  # type: ignore[arg-type]
    assert (title, text) == ("【紧急】张大爷疑似跌倒", body)
    assert sms_length(text) == segments


@pytest.mark.parametrize(
    ("audience", "lang", "body"),
    [
        (
            Audience.FAMILY,
            Lang.EN,
            "[URGENT] 张建国 (幸福小区 3-201): possible fall, 14:32. Please call them now; "
            f"grid worker 王芳 has also been notified. Ack: {URL}",
        ),
        (
            Audience.WORKER,
            Lang.ZH,
            "【紧急】张建国（幸福小区3栋201室）疑似跌倒，14:32。请立即上门查看；"
            f"网格员王芳已同时收到通知。健康备注：高血压，独居。 确认：{URL}",
        ),
        (
            Audience.GROUP,
            Lang.ZH,
            "【紧急】张**（幸福小区3栋）疑似跌倒，14:32。请立即上门查看；"
            f"网格员王芳已同时收到通知。 确认：{URL}",
        ),
        (
            Audience.SUPERVISOR,
            Lang.ZH,
            "【紧急】张建国（幸福小区3栋201室）疑似跌倒，14:32。请立即安排人员处置；"
            f"网格员王芳已同时收到通知。 确认：{URL}",
        ),
    ],
)
def test_fall_for_each_audience(audience: Audience, lang: Lang, body: str) -> None:
    ctx = replace(FALL, ack_url=URL, health_notes="高血压，独居")
    assert render(ctx, audience, lang)[1] == body


# --- kinds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "audience", "body"),
    [
        (
            {"kind": MessageKind.REMINDER, "waited_min": 10},
            Audience.FAMILY,
            "【紧急】再次提醒：张大爷（幸福小区3栋201）疑似跌倒（14:32），10分钟内尚无人确认。"
            "请立即联系。",
        ),
        (
            {"kind": MessageKind.ESCALATED, "waited_min": 15},
            Audience.SUPERVISOR,
            "【紧急】已升级：15分钟内无人确认。张建国（幸福小区3栋201室）疑似跌倒，14:32。"
            "请立即安排人员处置；已通知网格员王芳。",
        ),
        (
            {"kind": MessageKind.ESCALATED, "grouped_rules": ("inactivity",)},
            Audience.DUTY,
            "【紧急】已升级：尚无人确认。张建国（幸福小区3栋201室）疑似跌倒及长时间未活动，14:32。"
            "请立即安排人员处置；已通知网格员王芳。",
        ),
        (
            {"kind": MessageKind.UPDATED, "rule": "news2", "value": 7},
            Audience.FAMILY,
            "【紧急】情况加重：张大爷（幸福小区3栋201）预警评分偏高（7分），14:32。"
            "请立即联系；网格员王芳已同时收到通知。",
        ),
        (
            {"kind": MessageKind.ACKNOWLEDGED, "acked_by": "王芳", "note": "正在上门"},
            Audience.FAMILY,
            "【通知】王芳已确认（14:32）：张大爷（幸福小区3栋201）疑似跌倒。说明：正在上门。",
        ),
        (
            {"kind": MessageKind.RESOLVED, "acked_by": "王芳", "note": "无大碍。"},
            Audience.FAMILY,
            "【通知】王芳已处理（14:32）：张大爷（幸福小区3栋201）疑似跌倒。说明：无大碍。",
        ),
        (
            {"kind": MessageKind.RESOLVED, "rule": "hr_high", "severity": "warning", "value": 104},
            Audience.FAMILY,
            "【通知】已恢复（14:32）：张大爷（幸福小区3栋201）心率持续过高。",  # not the 104
        ),
        (
            {
                "kind": MessageKind.RESOLVED,
                "rule": "hr_high",
                "severity": "warning",
                "flapping": True,
            },
            Audience.WORKER,
            "【通知】已恢复（14:32）：张建国（幸福小区3栋201室）心率持续过高。近期反复出现。",
        ),
        (
            {"kind": MessageKind.ACKNOWLEDGED, "acked_by": "王芳"},
            Audience.FAMILY,
            "【通知】王芳已确认（14:32）：张大爷（幸福小区3栋201）疑似跌倒。",  # no ack link
        ),
    ],
)
def test_kinds(changes: dict[str, object], audience: Audience, body: str) -> None:
    ctx = replace(FALL, **changes)  # type: ignore[arg-type]
    if ctx.kind is MessageKind.ACKNOWLEDGED:
        ctx = replace(ctx, ack_url=URL)
    assert render(ctx, audience)[1] == body


@pytest.mark.parametrize(
    ("changes", "lang", "title", "body"),
    [
        (
            {"kind": MessageKind.REMINDER, "waited_min": 10},
            Lang.EN,
            "[URGENT] Reminder: possible fall, 张建国",
            "[URGENT] Reminder: possible fall, 张建国 (幸福小区 3-201), 14:32; "
            "not acknowledged for 10 min. Please call them now.",
        ),
        (
            {"kind": MessageKind.ACKNOWLEDGED, "acked_by": "王芳"},
            Lang.EN,
            "[Notice] Acknowledged by 王芳: possible fall, 张建国",
            "[Notice] Acknowledged by 王芳 at 14:32: possible fall, 张建国 (幸福小区 3-201).",
        ),
        (
            {"kind": MessageKind.RESOLVED},
            Lang.EN,
            "[Notice] Cleared: possible fall, 张建国",
            "[Notice] Cleared at 14:32: possible fall, 张建国 (幸福小区 3-201).",
        ),
        (
            {"kind": MessageKind.RESOLVED},
            Lang.ZH,
            "【通知】已恢复：张大爷疑似跌倒",
            "【通知】已恢复（14:32）：张大爷（幸福小区3栋201）疑似跌倒。",
        ),
    ],
)
def test_titles_and_english(changes: dict[str, object], lang: Lang, title: str, body: str) -> None:
    ctx = replace(FALL, worker_names=(), **changes)  # type: ignore[arg-type]
    assert render(ctx, Audience.FAMILY, lang) == (title, body)


# --- every rule, audience, language and kind: no crash, and within the promised length ---


@pytest.mark.parametrize("rule", [*RULES, "rule_from_the_future"])
@pytest.mark.parametrize("audience", list(Audience))
def test_every_rule_renders_within_its_length(rule: str, audience: Audience) -> None:
    problems: list[tuple[Lang, MessageKind, int, str]] = []
    for lang, kind, ack in itertools.product(
        Lang, MessageKind, ({}, {"ack_url": None, "ack_code": "1"})
    ):
        ctx = rich(rule, kind, **ack)
        title, body = render(ctx, audience, lang)
        assert title and body and "None" not in title + body
        if kind is MessageKind.NOTICE:
            continue  # a supervisor's own text, never cut: its length is theirs
        # Chinese: a family one segment before the link and two in all, others two; English three.
        if audience is Audience.FAMILY and lang is Lang.ZH:
            bare = render(replace(ctx, ack_url=None, ack_code=None), audience, lang)[1]
            if sms_length(bare) != 1:
                problems.append((lang, kind, sms_length(bare), bare))
        if sms_length(body) > (2 if lang is Lang.ZH else 3):
            problems.append((lang, kind, sms_length(body), body))
    assert not problems


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_has_its_own_phrase(rule: str) -> None:
    for lang in Lang:
        body = render(rich(rule, MessageKind.RAISED, ack_url=None), Audience.WORKER, lang)[1]
        assert "出现异常" not in body and "alert (" not in body


def test_docs_rules_are_all_covered() -> None:
    """A rule added to docs/rules.md without a phrase here fails this test."""
    docs = (Path(__file__).parents[3] / "docs" / "rules.md").read_text(encoding="utf-8")
    docs = docs[docs.index("## The rules") : docs.index("## State")]
    documented = set(re.findall(r"^\| `([a-z0-9_]+)` \|", docs, re.MULTILINE))
    documented |= set(re.findall(r"`([a-z0-9_]+)`", " ".join(re.findall(r"^###.*$", docs, re.M))))
    documented |= set(re.findall(r"^- `([a-z0-9_]+)`:", docs, re.MULTILINE))
    assert documented >= {"fall", "hr_high", "bin_full", "sorting_accuracy"}
    assert documented - {"threshold"} <= set(RULES)


@pytest.mark.parametrize(
    ("rule", "value", "limit", "detail", "zh", "en"),
    [
        ("hr_high", 131, 120, {}, "心率持续过高（131次/分）", "heart rate high (131 bpm)"),
        ("spo2_low", 88, 90, {}, "血氧偏低（88%）", "low blood oxygen (88%)"),
        ("sbp_high", 186, 180, {}, "血压过高（高压186mmHg）", "blood pressure high (systolic 186"),
        ("temp_high", 39, 38.5, {}, "体温过高（39.0℃）", "high temperature (39.0 °C)"),
        ("news2", 5, None, {}, "预警评分偏高（5分）", "early-warning score high (5 pts)"),
        ("baseline_hr", 96, 72, {}, "与本人平时相比心率异常（今日96，平时72次/分）", "usually 72"),
        ("inactivity", 265, 240, {}, "长时间未活动（4.5小时）", "no movement (4.5 h)"),
        ("inactivity", 0.0, None, {}, "长时间未活动，", "no movement, "),  # a restored finding
        ("no_data", 1800, 180, {}, "手环无数据（已30分钟）", "no data from the band (for 30 min)"),
        ("offline", None, None, {"reason": "power_off"}, "手环离线（已关机）", "(switched off)"),
        ("wandering", 650, 500, {}, "离家较远（约650米）", "far from home (about 650 m)"),
        ("wandering", 1250, 500, {}, "离家较远（约1.2公里）", "(about 1.2 km)"),
        ("bin_full_soon", 2.5, 4, {}, "垃圾桶即将装满（约2.5小时后满）", "full in 2.5 h"),
        ("bin_fire", 65.2, 60, {}, "垃圾桶温度异常（65.2℃，疑似起火）", "(65.2 °C, possible fire)"),
        (
            "sorting_accuracy",
            0.78,
            0.85,
            {},
            "分类准确率低于目标（78%，目标85%）",
            "78%, target 85%",
        ),
        (
            "rule_from_the_future",
            3.14159,
            None,
            {},
            "出现异常（3.1，rule_from_the_future）",
            "alert",
        ),
        ("hr_high", float("nan"), None, {}, "心率持续过高，", "heart rate high, "),
    ],
)
def test_phrases(
    rule: str, value: float | None, limit: float | None, detail: dict[str, str], zh: str, en: str
) -> None:
    ctx = replace(FALL, rule=rule, value=value, limit=limit, detail=detail)
    assert zh in render(ctx, Audience.WORKER, Lang.ZH)[1]
    assert en in render(ctx, Audience.WORKER, Lang.EN)[1]


@pytest.mark.parametrize(
    ("changes", "body"),
    [
        (  # a bin: where it stands and which one
            {"rule": "bin_full", "severity": "warning", "value": 95.0, "device_id": "BIN-0012"},
            "【提醒】幸福小区3栋（BIN-0012）垃圾桶已满（95%），14:32。请安排清运。",
        ),
        (  # a building's figure
            {"rule": "sorting_accuracy", "severity": "info", "value": 0.8, "limit": 0.85},
            "【通知】幸福小区3栋分类准确率低于目标（80%，目标85%），14:32。请加强分类指导。",
        ),
        (  # a bin's battery is the device's, not a band's
            {"rule": "battery_low", "severity": "warning", "value": 9, "device_id": "BIN-0012"},
            "【提醒】幸福小区3栋（BIN-0012）设备电量低（9%），14:32。请提醒充电。",
        ),
        (
            {"rule": "offline", "severity": "warning", "device_id": "BIN-7", "community": None},
            "【提醒】3栋（BIN-7）设备离线，14:32。请检查设备。",
        ),
    ],
)
def test_bins_and_buildings(changes: dict[str, object], body: str) -> None:
    ctx = replace(FALL, resident_name=None, room=None, worker_names=(), **changes)  # type: ignore[arg-type]
    assert render(ctx, Audience.WORKER)[1] == body


@pytest.mark.parametrize(
    ("severity", "zh", "en"),
    [
        ("critical", "【紧急】", "[URGENT] "),
        ("warning", "【提醒】", "[Warning] "),
        ("info", "【通知】", "[Notice] "),
        ("something-else", "【通知】", "[Notice] "),
    ],
)
def test_severity_prefix(severity: str, zh: str, en: str) -> None:
    ctx = replace(FALL, severity=severity)
    assert render(ctx, Audience.FAMILY, Lang.ZH)[1].startswith(zh)
    assert render(ctx, Audience.FAMILY, Lang.EN)[1].startswith(en)


# --- names and addresses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "gender", "birth_year", "shown"),
    [
        ("张建国", "男", 1945, "张大爷"),
        ("李秀英", "女", 1940, "李奶奶"),
        ("李秀英", "female", 1940, "李奶奶"),
        ("王强", "male", 1965, "王大爷"),  # 60 in 2025
        ("王强", "male", 1966, "王强"),  # 59
        ("王强", None, 1940, "王强"),  # gender unknown
        ("王强", "男", None, "王强"),  # age unknown
        ("欧阳建国", "男", 1940, "欧阳大爷"),  # a two-character surname
        ("买买提·艾力", "男", 1940, "买买提·艾力"),  # not a Han name: as registered
        ("John Smith", "男", 1940, "John Smith"),
    ],
)
def test_polite_form_for_family(
    name: str, gender: str | None, birth_year: int | None, shown: str
) -> None:
    ctx = replace(FALL, resident_name=name, gender=gender, birth_year=birth_year)
    assert render(ctx, Audience.FAMILY)[1].startswith(f"【紧急】{shown}（")
    assert render(ctx, Audience.WORKER)[1].startswith(f"【紧急】{name}（")  # staff: the full name


@pytest.mark.parametrize(
    ("changes", "family", "worker", "group", "english"),
    [
        (
            {"unit": "2单元"},
            "幸福小区3栋2单元201",
            "幸福小区3栋2单元201室",
            "幸福小区3栋",
            "幸福小区 3-2-201",
        ),
        (
            {"building": "3", "unit": "2", "room": "201室"},
            "幸福小区3栋2单元201",
            "幸福小区3栋2单元201室",
            "幸福小区3栋",
            "幸福小区 3-2-201",
        ),
        (
            {"building": "东楼", "room": None},
            "幸福小区东楼",
            "幸福小区东楼",
            "幸福小区东楼",
            "幸福小区 Bldg 东楼",
        ),
        ({"community": None}, "3栋201", "3栋201室", "3栋", "3-201"),
    ],
)
def test_addresses(
    changes: dict[str, str | None], family: str, worker: str, group: str, english: str
) -> None:
    ctx = replace(FALL, worker_names=(), **changes)  # type: ignore[arg-type]
    assert f"（{family}）" in render(ctx, Audience.FAMILY)[1]
    assert f"（{worker}）" in render(ctx, Audience.WORKER)[1]
    assert f"（{group}）" in render(ctx, Audience.GROUP)[1]
    assert f"({english})" in render(ctx, Audience.FAMILY, Lang.EN)[1]


@pytest.mark.parametrize(
    ("changes", "body"),
    [
        (  # too long: the "who else was told" clause goes first
            {
                "community": "幸福家园第二社区",
                "building": "12号楼",
                "unit": "3单元",
                "room": "1502",
                "worker_names": ("王芳", "李强"),
                "rule": "baseline_hr",
                "severity": "warning",
                "value": 96,
                "limit": 72,
            },
            "【提醒】张大爷（幸福家园第二社区12栋3单元1502）与本人平时相比心率异常"
            "（今日96，平时72次/分），14:32。请尽快联系。",
        ),
        (  # then the unit
            {
                "community": "幸福家园第二社区东北苑",
                "building": "12号楼",
                "unit": "3单元",
                "room": "1502",
                "rule": "baseline_spo2",
                "severity": "warning",
                "value": 93.5,
                "limit": 97.5,
            },
            "【提醒】张大爷（幸福家园第二社区东北苑12栋1502）与本人平时相比血氧偏低"
            "（今日93.5%，平时97.5%），14:32。请尽快联系。",
        ),
        (  # then the community, the address, the value: never a word cut in half
            {
                "community": "北京市朝阳区幸福家园第二社区居民委员会",
                "building": "12号楼",
                "unit": "3单元",
                "room": "1502",
                "rule": "baseline_spo2",
                "severity": "warning",
                "value": 93.5,
                "limit": 97,
            },
            "【提醒】张大爷（12栋1502）与本人平时相比血氧偏低（今日93.5%，平时97%），14:32。请尽快联系。",
        ),
    ],
)
def test_family_sms_drops_optional_parts_in_order(changes: dict[str, object], body: str) -> None:
    text = render(replace(FALL, **changes), Audience.FAMILY)[1]  # type: ignore[arg-type]
    assert text == body and sms_length(text) == 1


def test_health_notes_reach_workers_only_and_shortened() -> None:
    ctx = replace(FALL, health_notes=NOTES)
    worker = render(ctx, Audience.WORKER)[1]
    assert "健康备注：高血压" in worker and "…" in worker and sms_length(worker) <= 2
    for audience in (Audience.FAMILY, Audience.SUPERVISOR, Audience.DUTY, Audience.GROUP):
        for lang in Lang:
            body = render(ctx, audience, lang)[1]
            assert "高血压" not in body and "备注" not in body and "notes" not in body.lower()


# --- group chats -------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", [*RULES, "rule_from_the_future"])
def test_group_never_shows_name_phone_notes_or_room(rule: str) -> None:
    for lang in Lang:
        for kind in MessageKind:
            title, body = render(rich(rule, kind), Audience.GROUP, lang)
            text = title + body
            assert "张建国" not in text and PHONE not in text
            assert "高血压" not in text and "1502" not in text and "单元" not in text
            assert "Unit" not in text and "Room" not in text
            if rule not in BIN_RULES and kind is not MessageKind.NOTICE:
                assert "张**" in title and "张**" in body


def test_group_notice_masks_the_residents_to_check() -> None:
    body = render(rich("fall", MessageKind.NOTICE), Audience.GROUP)[1]
    assert "张**、李**、王**、欧**" in body and "138****8000" in body
    labels = ("张建国（12栋1502）", "李秀英(12栋301)")
    body = render(rich("fall", MessageKind.NOTICE, residents_to_check=labels), Audience.GROUP)[1]
    assert "张**、李**。" in body and "1502" not in body and "301" not in body


@pytest.mark.parametrize(
    ("text", "body"),
    [
        (
            "今晚有大暴雨，请关好门窗、不要外出",
            "【紧急】暴雨橙色预警：今晚有大暴雨，请关好门窗、不要外出。"
            "网格员王芳、李强将联系张大爷确认平安，请您也多加关注。",
        ),
        (  # the supervisor's text is never cut; the workers' names give way to fit one SMS
            f"今晚到明早有大暴雨，请提醒独居老人关好门窗、不要外出。值班电话{PHONE}",
            "【紧急】暴雨橙色预警：今晚到明早有大暴雨，请提醒独居老人关好门窗、不要外出。"
            f"值班电话{PHONE}。请多关注张大爷的情况。",
        ),
    ],
)
def test_notice_to_family_names_no_other_resident(text: str, body: str) -> None:
    ctx = rich("fall", MessageKind.NOTICE, ack_url=None, ack_code=None, notice_text=text)
    assert render(ctx, Audience.FAMILY) == ("【紧急】暴雨橙色预警", body)
    assert not {"李秀英", "王桂兰", "欧阳明"} & set(re.findall(r"[\u4e00-\u9fff]{3}", body))
    for other in ("李秀英", "王桂兰", "欧阳明"):
        assert other not in render(ctx, Audience.FAMILY, Lang.EN)[1]


def test_notice_to_workers_lists_residents() -> None:
    ctx = rich("fall", MessageKind.NOTICE, severity="warning", building=None, ack_code=None)
    assert render(ctx, Audience.WORKER)[1] == (
        "【提醒】暴雨橙色预警（幸福家园第二社区）：今晚到明早有大暴雨，请提醒独居老人关好门窗、"
        f"不要外出。值班电话{PHONE}。请逐一确认平安（4人）：张建国、李秀英、王桂兰、欧阳明。"
        f" 反馈：{URL}"
    )


# --- SMS segments, time zones, inputs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        ("", 0),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("中" * 70, 1),
        ("中" * 71, 2),
        ("中" * 134, 2),
        ("中" * 135, 3),
        ("a" * 159 + "中", 3),  # one Chinese character makes the whole text UCS-2
        ("Temp 39 °C", 1),
        ("😀" * 35, 1),  # a surrogate pair is two units
        ("😀" * 36, 2),
    ],
)
def test_sms_length(text: str, segments: int) -> None:
    assert sms_length(text) == segments


def test_time_zone_is_a_parameter() -> None:
    assert "，06:32。" in render(FALL, Audience.FAMILY, tz="UTC")[1]
    assert "，14:32。" in render(FALL, Audience.FAMILY, tz=SHANGHAI)[1]


def test_plain_strings_are_accepted() -> None:
    ctx = replace(FALL, kind="raised")  # type: ignore[arg-type]
    assert render(ctx, "family", "zh")[1] == ISSUE_TEXT  # type: ignore[arg-type]


# --- the daily digest ---------------------------------------------------------------------------

DIGEST = [
    MessageContext(
        rule="bin_full_soon",
        severity="info",
        kind=MessageKind.RAISED,
        at_ms=AT,
        community="幸福小区",
        building="3栋",
        device_id="BIN-0012",
        value=2.5,
        limit=4,
    ),
    MessageContext(
        rule="sorting_accuracy",
        severity="info",
        kind=MessageKind.RAISED,
        at_ms=AT - 3_600_000,
        community="幸福小区",
        building="5栋",
        value=0.78,
        limit=0.85,
    ),
    MessageContext(
        rule="bin_full_soon",
        severity="info",
        kind=MessageKind.RESOLVED,
        at_ms=AT + 600_000,
        community="幸福小区",
        building="4栋",
        device_id="BIN-0020",
    ),
    MessageContext(
        rule="baseline_hr",
        severity="info",
        kind=MessageKind.RAISED,
        at_ms=AT - 7_200_000,
        resident_name="李秀英",
        gender="女",
        birth_year=1940,
        community="幸福小区",
        building="3栋",
        room="102",
        value=88,
        limit=74,
    ),
]


@pytest.mark.parametrize(
    ("audience", "lang", "title", "body"),
    [
        (
            Audience.WORKER,
            Lang.ZH,
            "【通知】每日汇总（6月12日）",
            "【通知】每日汇总（6月12日）：共4条。\n"
            "与本人平时相比心率异常（1条）：\n"
            "12:32 李秀英（幸福小区3栋102室）：今日88，平时74次/分\n"
            "垃圾桶即将装满（2条）：\n"
            "14:32 幸福小区3栋（BIN-0012）：约2.5小时后满\n"
            "14:42 幸福小区4栋（BIN-0020）：已恢复\n"
            "分类准确率低于目标（1条）：\n"
            "13:32 幸福小区5栋：78%，目标85%",
        ),
        (
            Audience.GROUP,
            Lang.EN,
            "[Notice] Daily digest (12 Jun)",
            "[Notice] Daily digest (12 Jun): 4 items.\n"
            "heart rate unusual for them (1):\n"
            "12:32 李** (幸福小区 Bldg 3): today 88, usually 74 bpm\n"
            "bin nearly full (2):\n"
            "14:32 幸福小区 Bldg 3 (BIN-0012): full in 2.5 h\n"
            "14:42 幸福小区 Bldg 4 (BIN-0020): cleared\n"
            "sorting accuracy below target (1):\n"
            "13:32 幸福小区 Bldg 5: 78%, target 85%",
        ),
    ],
)
def test_digest(audience: Audience, lang: Lang, title: str, body: str) -> None:
    assert digest(DIGEST, audience, lang) == (title, body)


def test_digest_family_polite_and_days() -> None:
    later = replace(DIGEST[3], at_ms=AT + 86_400_000)
    title, body = digest([DIGEST[3], later], Audience.FAMILY)
    assert title == "【通知】每日汇总（6月12日至6月13日）"
    assert "6/12 12:32 李奶奶（幸福小区3栋102）" in body and "6/13 14:32 李奶奶" in body


def test_digest_empty_and_long() -> None:
    assert digest([], Audience.WORKER) == ("【通知】每日汇总", "【通知】每日汇总：今日无提示信息。")
    many = [replace(DIGEST[0], at_ms=AT + i * 60_000) for i in range(25)]
    body = digest(many, Audience.WORKER, Lang.ZH)[1]
    assert "垃圾桶即将装满（25条）" in body and body.endswith("……另有5条")


def test_a_bundle_lists_each_alert_with_its_link_under_the_worst_prefix() -> None:
    items = [("【提醒】1栋SpO2偏低", "http://x/a/1"), ("【紧急】2栋疑似跌倒", "http://x/a/2")]
    title, body = bundle(items, "critical", Lang.ZH)
    assert title == "【紧急】2条告警待处理"
    assert body.splitlines() == [
        "【紧急】2条告警待处理，请逐条确认：",
        "1. 【提醒】1栋SpO2偏低（确认：http://x/a/1）",
        "2. 【紧急】2栋疑似跌倒（确认：http://x/a/2）",
    ]
    title, body = bundle(items, "warning", Lang.EN)
    assert title == "[Warning] 2 alerts to handle"
    assert body.splitlines()[1] == "1. 【提醒】1栋SpO2偏低 (acknowledge: http://x/a/1)"


def test_a_long_bundle_says_how_many_more() -> None:
    _, body = bundle([(f"告警{i}", f"http://x/a/{i}") for i in range(45)], "warning")
    lines = body.splitlines()
    assert len(lines) == 1 + 30 + 1
    assert lines[-1] == "……另有15条"
