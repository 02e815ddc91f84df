"""What each rule means, in Chinese and English, and what to do about it (by audience)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from alerts.templates.context import Detail, Lang

ValueText = Callable[[float, float | None, Detail, Lang], str | None]


def _num(x: float, digits: int = 0, *, fixed: bool = False) -> str:
    if digits == 0:
        return str(round(x))
    text = f"{x:.{digits}f}"
    return text if fixed else text.rstrip("0").rstrip(".")


def _fmt(
    zh: str, en: str, *, zh_l: str = "", en_l: str = "", digits: int = 0, fixed: bool = False
) -> ValueText:
    """A value text from templates with {v} (the value) and, when a limit is known, {l}."""

    def text(v: float, limit: float | None, _: Detail, lang: Lang) -> str:
        with_limit = zh_l if lang is Lang.ZH else en_l
        template = (
            with_limit if with_limit and limit is not None else (zh if lang is Lang.ZH else en)
        )
        lim = _num(limit, digits, fixed=fixed) if limit is not None else ""
        return template.format(v=_num(v, digits, fixed=fixed), l=lim)

    return text


def _duration(minutes: float, lang: Lang) -> str:
    if minutes < 60:
        return f"{round(minutes)}分钟" if lang is Lang.ZH else f"{round(minutes)} min"
    if minutes < 48 * 60:
        hours = _num(round(minutes / 30) / 2, 1)  # to the half hour
        return f"{hours}小时" if lang is Lang.ZH else f"{hours} h"
    days = round(minutes / 1440)
    return f"{days}天" if lang is Lang.ZH else f"{days} days"


def _minutes(v: float, _: float | None, __: Detail, lang: Lang) -> str | None:
    # A restored finding carries 0 here: say nothing rather than "0 minutes".
    return _duration(v, lang) if v > 0 else None


def _silent(v: float, _: float | None, detail: Detail, lang: Lang) -> str | None:
    if detail.get("reason") == "power_off":
        return "已关机" if lang is Lang.ZH else "switched off"
    if v <= 0:
        return None
    return f"已{_duration(v / 60, lang)}" if lang is Lang.ZH else f"for {_duration(v / 60, lang)}"


def _distance(v: float, _: float | None, __: Detail, lang: Lang) -> str:
    if v >= 1000:
        km = _num(v / 1000, 1)
        return f"约{km}公里" if lang is Lang.ZH else f"about {km} km"
    return f"约{_num(v)}米" if lang is Lang.ZH else f"about {_num(v)} m"


def _hours_left(v: float, _: float | None, __: Detail, lang: Lang) -> str:
    return (
        f"约{_duration(v * 60, lang)}后满"
        if lang is Lang.ZH
        else f"full in {_duration(v * 60, lang)}"
    )


def _share(v: float, limit: float | None, _: Detail, lang: Lang) -> str:
    def pct(x: float) -> str:
        return f"{_num(x * 100 if x <= 1 else x)}%"  # the engine sends 0.78; a person may send 78

    if limit is None:
        return pct(v)
    return f"{pct(v)}，目标{pct(limit)}" if lang is Lang.ZH else f"{pct(v)}, target {pct(limit)}"


@dataclass(frozen=True, slots=True)
class Rule:
    """How a rule is said: its phrases, what to do about it, how its value reads."""

    zh: str
    en: str
    care: str  # what to do about it: a key of CTA
    value: ValueText | None = None
    tag_zh: str = ""  # always said, also once cleared
    tag_en: str = ""
    device_zh: str = ""  # said instead when the subject is not a resident's band
    device_en: str = ""


_HR = _fmt("{v}次/分", "{v} bpm")
_PCT = _fmt("{v}%", "{v}%")
_TEMP = _fmt("{v}℃", "{v} °C", digits=1, fixed=True)

RULES: Final[Mapping[str, Rule]] = {
    "fall": Rule("疑似跌倒", "possible fall", "urgent"),
    "sos": Rule("按下紧急呼叫(SOS)", "SOS button pressed", "urgent"),
    "spo2_critical": Rule("血氧过低", "very low blood oxygen", "urgent", _PCT),
    "hr_high": Rule("心率持续过高", "heart rate high", "vital", _HR),
    "hr_low": Rule("心率持续过低", "heart rate low", "vital", _HR),
    "spo2_low": Rule("血氧偏低", "low blood oxygen", "vital", _PCT),
    "sbp_high": Rule(
        "血压过高", "blood pressure high", "vital", _fmt("高压{v}mmHg", "systolic {v} mmHg")
    ),
    "temp_high": Rule("体温过高", "high temperature", "vital", _TEMP),
    "temp_low": Rule("体温过低", "low temperature", "vital", _TEMP),
    # A partial score for triage: never worded as a diagnosis.
    "news2": Rule("预警评分偏高", "early-warning score high", "vital", _fmt("{v}分", "{v} pts")),
    "baseline_hr": Rule(
        "与本人平时相比心率异常",
        "heart rate unusual for them",
        "vital",
        _fmt(
            "今日{v}次/分",
            "today {v} bpm",
            zh_l="今日{v}，平时{l}次/分",
            en_l="today {v}, usually {l} bpm",
            digits=1,  # daily medians: 96.5
        ),
    ),
    "baseline_spo2": Rule(
        "与本人平时相比血氧偏低",
        "blood oxygen below their usual",
        "vital",
        _fmt(
            "今日{v}%",
            "today {v}%",
            zh_l="今日{v}%，平时{l}%",
            en_l="today {v}%, usually {l}%",
            digits=1,
        ),
    ),
    "inactivity": Rule("长时间未活动", "no movement", "check", _minutes),
    "no_data": Rule("手环无数据", "no data from the band", "check", _silent),
    "wandering": Rule("离家较远", "far from home", "check", _distance),
    "offline": Rule(
        "手环离线", "band offline", "device", _silent, "", "", "设备离线", "device offline"
    ),
    "not_worn": Rule("未佩戴手环", "band not worn", "wear"),
    "battery_low": Rule(
        "手环电量低", "band battery low", "charge", _PCT, "", "", "设备电量低", "battery low"
    ),
    "bin_full": Rule("垃圾桶已满", "bin full", "empty", _PCT),
    "bin_full_soon": Rule("垃圾桶即将装满", "bin nearly full", "empty", _hours_left),
    "bin_fire": Rule(
        "垃圾桶温度异常", "bin temperature abnormal", "fire", _TEMP, "疑似起火", "possible fire"
    ),
    "lid_jam": Rule("桶盖卡住", "bin lid stuck", "repair"),
    "sorting_accuracy": Rule(
        "分类准确率低于目标", "sorting accuracy below target", "sorting", _share
    ),
}
ORDER: Final = {name: i for i, name in enumerate(RULES)}

# Calls to action by care and audience: family, worker (and group), lead (supervisor, duty).
CTA: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
    ("urgent", "family"): ("请立即联系", "Please call them now"),
    ("vital", "family"): ("请尽快联系", "Please call them soon"),
    ("check", "family"): ("请尽快联系确认", "Please check on them soon"),
    ("device", "family"): ("请提醒开机", "Please remind them to switch it on"),
    ("wear", "family"): ("请提醒佩戴", "Please remind them to wear it"),
    ("charge", "family"): ("请提醒充电", "Please remind them to charge it"),
    ("other", "family"): ("请留意", "Please keep an eye on it"),
    ("urgent", "worker"): ("请立即上门查看", "Please visit now"),
    ("vital", "worker"): ("请尽快联系或上门", "Please call or visit soon"),
    ("check", "worker"): ("请尽快联系确认", "Please check on them soon"),
    ("device", "worker"): ("请检查设备", "Please check the device"),
    ("wear", "worker"): ("请提醒佩戴", "Please remind them to wear it"),
    ("charge", "worker"): ("请提醒充电", "Please remind them to charge it"),
    ("empty", "worker"): ("请安排清运", "Please arrange emptying"),
    ("fire", "worker"): ("请立即到场，必要时拨打119", "Go now; call 119 if needed"),
    ("repair", "worker"): ("请安排检修", "Please arrange a repair"),
    ("sorting", "worker"): ("请加强分类指导", "Please coach residents on sorting"),
    ("other", "worker"): ("请尽快处理", "Please follow up"),
    ("urgent", "lead"): ("请立即安排人员处置", "Please send someone now"),
    ("other", "lead"): ("请安排人员跟进", "Please arrange a follow-up"),
}
PREFIX: Final = {
    "critical": ("【紧急】", "[URGENT]"),
    "warning": ("【提醒】", "[Warning]"),
    "info": ("【通知】", "[Notice]"),
}


def rule_phrase(name: str) -> Rule:
    """The phrases of a rule; a rule not listed here still reaches people, named as it is."""
    known = RULES.get(name)
    if known is not None:
        return known
    return Rule("出现异常", "alert", "other", _fmt("{v}", "{v}", digits=1), name, name)
