"""Alert messages: what a finding means, in one short SMS or WeChat text per audience.

`render` turns one alert event (`MessageContext`) into (title, body) for one audience
in Chinese or English; `digest` does the same for a day's information-level findings;
`sms_length` counts segments as carriers bill them. Pure functions: no clock, no I/O.

A family's Chinese SMS is kept to one segment (70 UCS-2 characters) before the
acknowledgement part by dropping optional parts in a fixed order, never by cutting
words; the link comes last (text right after a link breaks it on many phones) and
may add a segment. Other Chinese messages keep to two segments, English to three.
Group chats (a WeCom group bot) get masked names, the building only, no health
notes and no phone numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

from core.logs import mask_name
from core.phones import mask_phone

__all__ = [
    "DEFAULT_TZ",
    "Audience",
    "Kind",
    "Lang",
    "MessageContext",
    "digest",
    "render",
    "sms_length",
]

DEFAULT_TZ: Final = "Asia/Shanghai"
Detail = Mapping[str, str | float | int | bool]


class Audience(StrEnum):
    FAMILY = "family"  # emergency contacts: the polite name, a compact address
    WORKER = "worker"  # the grid worker (网格员): full name, full address, health notes
    SUPERVISOR = "supervisor"  # escalation: full name and address, no health notes
    DUTY = "duty"  # the duty centre: as the supervisor
    GROUP = "group"  # a group chat (WeCom group bot): masked names, no notes, no phones


class Lang(StrEnum):
    ZH = "zh"
    EN = "en"


class Kind(StrEnum):
    RAISED = "raised"
    REMINDER = "reminder"  # still not acknowledged
    ESCALATED = "escalated"  # to the next rung: supervisor, duty centre
    UPDATED = "updated"  # severity rose
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"  # cleared by the rule, or resolved by a person (`acked_by`)
    NOTICE = "notice"  # a supervisor's notice for an area


@dataclass(frozen=True, slots=True)
class MessageContext:
    """Everything one message may say; `at_ms` is the time of what it announces.

    That is the raise for RAISED, REMINDER, ESCALATED and UPDATED, the acknowledgement
    for ACKNOWLEDGED, the clearing (or the person's resolve) for RESOLVED.
    """

    rule: str
    severity: str  # "critical" | "warning" | "info"
    kind: Kind
    at_ms: int
    resident_name: str | None = None
    gender: str | None = None  # 男/女 or male/female
    birth_year: int | None = None
    community: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    device_id: str | None = None
    value: float | None = None
    limit: float | None = None
    detail: Detail = field(default_factory=dict)
    health_notes: str | None = None  # rendered for Audience.WORKER only
    worker_names: tuple[str, ...] = ()  # the grid workers notified as well
    acked_by: str | None = None  # ACKNOWLEDGED: who; RESOLVED: who resolved it (None: cleared)
    note: str | None = None  # the acknowledging or resolving person's note
    ack_url: str | None = None
    ack_code: str | None = None  # an SMS reply code
    step: int = 0  # the alert's rung on the ladder: not shown (reminders say `waited_min`)
    flapping: bool = False
    grouped_rules: tuple[str, ...] = ()  # other rules folded into this alert
    notice_title: str | None = None
    notice_text: str | None = None
    residents_to_check: tuple[str, ...] = ()  # never shown to FAMILY
    waited_min: int | None = None  # REMINDER, ESCALATED: minutes without acknowledgement


# --- SMS segments ---------------------------------------------------------------------

_GSM7: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT: Final = frozenset("^{}\\[~]|€\f")  # an escape and the character: two septets


def sms_length(text: str) -> int:
    """Segments as carriers count them: 70/67 UCS-2 units with any Chinese, else 160/153."""
    if not text:
        return 0
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        costs = [2 if c in _GSM7_EXT else 1 for c in text]
        single, part = 160, 153
    else:
        costs = [2 if ord(c) > 0xFFFF else 1 for c in text]  # a surrogate pair
        single, part = 70, 67
    if sum(costs) <= single:
        return 1
    # An escape pair or a surrogate pair is never split across two parts.
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return segments


# --- what each rule means ---------------------------------------------------------------

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
class _Rule:
    zh: str
    en: str
    care: str  # what to do about it: a key of _CTA
    value: ValueText | None = None
    tag_zh: str = ""  # always said, also once cleared
    tag_en: str = ""
    device_zh: str = ""  # said instead when the subject is not a resident's band
    device_en: str = ""


_HR = _fmt("{v}次/分", "{v} bpm")
_PCT = _fmt("{v}%", "{v}%")
_TEMP = _fmt("{v}℃", "{v} °C", digits=1, fixed=True)

_RULES: Final[Mapping[str, _Rule]] = {
    "fall": _Rule("疑似跌倒", "possible fall", "urgent"),
    "sos": _Rule("按下紧急呼叫(SOS)", "SOS button pressed", "urgent"),
    "spo2_critical": _Rule("血氧过低", "very low blood oxygen", "urgent", _PCT),
    "hr_high": _Rule("心率持续过高", "heart rate high", "vital", _HR),
    "hr_low": _Rule("心率持续过低", "heart rate low", "vital", _HR),
    "spo2_low": _Rule("血氧偏低", "low blood oxygen", "vital", _PCT),
    "sbp_high": _Rule(
        "血压过高", "blood pressure high", "vital", _fmt("高压{v}mmHg", "systolic {v} mmHg")
    ),
    "temp_high": _Rule("体温过高", "high temperature", "vital", _TEMP),
    "temp_low": _Rule("体温过低", "low temperature", "vital", _TEMP),
    # A partial score for triage: never worded as a diagnosis.
    "news2": _Rule("预警评分偏高", "early-warning score high", "vital", _fmt("{v}分", "{v} pts")),
    "baseline_hr": _Rule(
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
    "baseline_spo2": _Rule(
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
    "inactivity": _Rule("长时间未活动", "no movement", "check", _minutes),
    "no_data": _Rule("手环无数据", "no data from the band", "check", _silent),
    "wandering": _Rule("离家较远", "far from home", "check", _distance),
    "offline": _Rule(
        "手环离线", "band offline", "device", _silent, "", "", "设备离线", "device offline"
    ),
    "not_worn": _Rule("未佩戴手环", "band not worn", "wear"),
    "battery_low": _Rule(
        "手环电量低", "band battery low", "charge", _PCT, "", "", "设备电量低", "battery low"
    ),
    "bin_full": _Rule("垃圾桶已满", "bin full", "empty", _PCT),
    "bin_full_soon": _Rule("垃圾桶即将装满", "bin nearly full", "empty", _hours_left),
    "bin_fire": _Rule(
        "垃圾桶温度异常", "bin temperature abnormal", "fire", _TEMP, "疑似起火", "possible fire"
    ),
    "lid_jam": _Rule("桶盖卡住", "bin lid stuck", "repair"),
    "sorting_accuracy": _Rule(
        "分类准确率低于目标", "sorting accuracy below target", "sorting", _share
    ),
}
_ORDER: Final = {name: i for i, name in enumerate(_RULES)}

# Calls to action by care and audience: family, worker (and group), lead (supervisor, duty).
_CTA: Final[Mapping[tuple[str, str], tuple[str, str]]] = {
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
_PREFIX: Final = {
    "critical": ("【紧急】", "[URGENT]"),
    "warning": ("【提醒】", "[Warning]"),
    "info": ("【通知】", "[Notice]"),
}
# Two-character surnames, so 欧阳建国 becomes 欧阳大爷 and not 欧大爷.
_SURNAMES_2: Final = (
    "欧阳司马上官诸葛东方皇甫尉迟公孙慕容长孙"
    "宇文司徒夏侯轩辕令狐钟离澹台公冶太史申屠"
    "闻人南宫呼延端木百里东郭西门第五"
)
_COMPOUND_SURNAMES: Final = frozenset(_SURNAMES_2[i : i + 2] for i in range(0, len(_SURNAMES_2), 2))
_HAN: Final = re.compile(r"^[\u4e00-\u9fff]+$")


def _rule(name: str) -> _Rule:
    known = _RULES.get(name)
    if known is not None:
        return known
    # A rule this file does not know yet still reaches people, named as it is.
    return _Rule("出现异常", "alert", "other", _fmt("{v}", "{v}", digits=1), name, name)


# --- pieces -------------------------------------------------------------------------------


def _polite(name: str, gender: str | None, birth_year: int | None, year: int) -> str:
    """张大爷 / 李奶奶 for a resident of 60 or more whose gender is known; else the name."""
    sex = (gender or "").strip().lower()
    honorific = {
        "男": "大爷",
        "male": "大爷",
        "m": "大爷",
        "女": "奶奶",
        "female": "奶奶",
        "f": "奶奶",
    }
    title = honorific.get(sex)
    if title is None or birth_year is None or year - birth_year < 60 or not _HAN.match(name):
        return name
    surname = name[:2] if len(name) >= 3 and name[:2] in _COMPOUND_SURNAMES else name[:1]
    return surname + title


def _numbered(text: str | None, suffixes: str) -> tuple[str, bool]:
    """("3", True) for "3", "3栋" or "3号楼"; the stripped text and False for "东楼"."""
    text = (text or "").strip()
    match = re.fullmatch(rf"([0-9A-Za-z-]+)(?:{suffixes})?", text)
    return (match.group(1), True) if match else (text, False)


def _address(
    lang: Lang,
    community: str | None,
    building: str | None,
    unit: str | None = None,
    room: str | None = None,
    *,
    full: bool = False,
) -> str:
    """幸福小区3栋2单元201 (full: ...201室); in English 幸福小区 3-2-201 (full: ..., Room 201)."""
    place = (community or "").strip()
    bldg, b_num = _numbered(building, "栋|号楼|幢|号|楼")
    unit_, u_num = _numbered(unit, "单元")
    room_, _ = _numbered(room, "室|号")
    if lang is Lang.ZH:
        return "".join(
            (
                place,
                bldg + "栋" if bldg and b_num else bldg,
                unit_ + "单元" if unit_ and u_num else unit_,
                room_ + "室" if room_ and full else room_,
            )
        )
    if full:
        parts = (
            place,
            f"Bldg {bldg}" if bldg else "",
            f"Unit {unit_}" if unit_ else "",
            f"Room {room_}" if room_ else "",
        )
        return ", ".join(p for p in parts if p)
    home = (
        f"Bldg {bldg}"
        if bldg and not (unit_ or room_)
        else "-".join(p for p in (bldg, unit_, room_) if p)
    )
    return " ".join(p for p in (place, home) if p)


def _sentence_end(text: str, lang: Lang) -> str:
    text = text.strip().rstrip("。．.；;，,、 ")
    return text + ("。" if lang is Lang.ZH else ".") if text else ""


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class _Cut:
    """How much of a message to keep; `_CUTS` tries them in order until one fits."""

    notes: int = 40  # characters of health notes (workers only)
    others: bool = True  # "网格员王芳已同时收到通知"
    address: int = 0  # 0 all, 1 without the unit, 2 without the community, 3 none
    value: bool = True
    note: int = 60  # characters of the acknowledging person's note
    names: int = 10  # residents listed in an area notice


_CUTS: Final = (
    _Cut(),
    _Cut(notes=16),
    _Cut(notes=0),
    _Cut(notes=0, others=False),
    _Cut(notes=0, others=False, address=1),
    _Cut(notes=0, others=False, address=2),
    _Cut(notes=0, others=False, address=3),
    _Cut(notes=0, others=False, address=3, value=False),
    _Cut(notes=0, others=False, address=3, value=False, note=16, names=5),
    _Cut(notes=0, others=False, address=3, value=False, note=0, names=0),
)
_STAFF: Final = frozenset({Audience.WORKER, Audience.SUPERVISOR, Audience.DUTY})


class _Writer:
    """The pieces of one message for one audience and language."""

    def __init__(self, ctx: MessageContext, audience: Audience, lang: Lang, zone: tzinfo) -> None:
        self.ctx, self.audience, self.lang = ctx, audience, lang
        self.zh = lang is Lang.ZH
        self.kind = Kind(ctx.kind)
        local = datetime.fromtimestamp(ctx.at_ms / 1000, zone)
        self.time, self.date, self.year = local.strftime("%H:%M"), local.date(), local.year
        self.rule = _rule(ctx.rule)
        self.name = (ctx.resident_name or "").strip()

    def t(self, zh: str, en: str) -> str:
        return zh if self.zh else en

    def prefix(self, *, settled: bool = False) -> str:
        # An acknowledgement or an all-clear is news, not a new emergency.
        zh, en = _PREFIX.get("info" if settled else self.ctx.severity, _PREFIX["info"])
        return self.t(zh, en + " ")

    def who(self) -> str:
        if not self.name:
            return ""
        if self.audience is Audience.GROUP:
            return mask_name(self.name)
        if self.audience is Audience.FAMILY and self.zh:
            return _polite(self.name, self.ctx.gender, self.ctx.birth_year, self.year)
        return self.name

    def where(self, level: int = 0) -> str:
        c = self.ctx
        if level >= 3:
            return ""
        if self.audience is Audience.GROUP or not self.name:
            # Group chats: the building, never the door. Bins and buildings have no door.
            return _address(self.lang, c.community if level < 2 else None, c.building)
        return _address(
            self.lang,
            c.community if level < 2 else None,
            c.building,
            c.unit if level < 1 else None,
            c.room,
            full=self.audience in _STAFF,
        )

    def subject(self, level: int = 0) -> str:
        who, where, device = self.who(), self.where(level), self.ctx.device_id
        inner = where if who else device if where else ""
        head = who or where or (self.t("设备", "device ") + device if device else "")
        return head + (self.t(f"（{inner}）", f" ({inner})") if inner else "")

    def value_text(self, *, value: bool = True) -> str:
        c, rule = self.ctx, self.rule
        inside: list[str] = []
        if value and rule.value is not None and c.value is not None and math.isfinite(c.value):
            limit = c.limit if c.limit is not None and math.isfinite(c.limit) else None
            text = rule.value(c.value, limit, c.detail, self.lang)
            if text:
                inside.append(text)
        elif value and c.rule == "offline" and c.detail.get("reason") == "power_off":
            # A status-topic offline carries no value, only its reason.
            inside.append(self.t("已关机", "switched off"))
        tag = self.t(rule.tag_zh, rule.tag_en)
        if tag:
            inside.append(tag)
        return self.t("，", ", ").join(inside)

    def what(self, *, value: bool = True, grouped: bool = True) -> str:
        rule = self.rule
        base = self.t(rule.zh, rule.en)
        if not self.name and (rule.device_zh or rule.device_en):
            base = self.t(rule.device_zh, rule.device_en)
        inner = self.value_text(value=value)
        text = base + (self.t(f"（{inner}）", f" ({inner})") if inner else "")
        if grouped:
            extra = [_rule(r) for r in dict.fromkeys(self.ctx.grouped_rules) if r != self.ctx.rule]
            if extra:
                phrases = [self.t(r.zh, r.en) for r in extra]
                text += self.t("及" + "、".join(phrases), " and " + ", ".join(phrases))
        return text

    def cta(self) -> str:
        care, critical = self.rule.care, self.ctx.severity == "critical"
        if self.audience is Audience.FAMILY:
            group = "family"
        elif self.audience in (Audience.SUPERVISOR, Audience.DUTY):
            group, care = "lead", "urgent" if critical or care in ("urgent", "fire") else "other"
        else:
            group = "worker"
        if critical and care in ("vital", "check", "other"):
            care = "urgent"
        zh, en = _CTA.get((care, group)) or _CTA[("other", group)]
        return self.t(zh, en)

    def workers(self) -> list[str]:
        return [n.strip() for n in self.ctx.worker_names if n.strip()]

    def told(self, *, before: bool = False) -> str:
        names = self.workers()
        if not names:
            return ""
        joined = self.t("、".join(names), ", ".join(names))
        many = len(names) > 1
        if before:
            return self.t(f"已通知网格员{joined}", f"grid worker{'s' * many} {joined} notified")
        return self.t(
            f"网格员{joined}已同时收到通知",
            f"grid worker{'s' * many} {joined} {'have' if many else 'has'} also been notified",
        )

    def notes(self, limit: int) -> str:
        notes = (self.ctx.health_notes or "").strip()
        if self.audience is not Audience.WORKER or not notes or limit <= 0:
            return ""
        return _sentence_end(
            self.t("健康备注：", "Health notes: ") + _clip(notes, limit), self.lang
        )

    def note(self, limit: int) -> str:
        note = (self.ctx.note or "").strip()
        if not note or limit <= 0:
            return ""
        return _sentence_end(self.t("说明：", "Note: ") + _clip(note, limit), self.lang)

    def ack(self) -> str:
        if self.kind in (Kind.ACKNOWLEDGED, Kind.RESOLVED):
            return ""
        url, code = (self.ctx.ack_url or "").strip(), (self.ctx.ack_code or "").strip()
        notice = self.kind is Kind.NOTICE
        verb_zh, verb_en = ("反馈", "report back") if notice else ("确认", "acknowledge")
        label_en = "Report back" if notice else "Ack"
        # The link goes last: text right after a link breaks it on many phones.
        if url and code:
            return self.t(
                f" 回复{code}或{verb_zh}：{url}", f" Reply {code} or {label_en.lower()}: {url}"
            )
        if url:
            return self.t(f" {verb_zh}：{url}", f" {label_en}: {url}")
        if code:
            return self.t(f" 回复{code}{verb_zh}", f" Reply {code} to {verb_en}")
        return ""

    def sentence(self, *parts: str) -> str:
        kept = [p for p in parts if p]
        if not kept:
            return ""
        return _sentence_end(self.t("；", "; ").join(kept), self.lang)

    def join(self, *sentences: str) -> str:
        return self.t("", " ").join(s for s in sentences if s)

    def waited(self, zh: str, en: str) -> str:
        minutes = self.ctx.waited_min
        if minutes is None or minutes <= 0:
            return self.t("尚无人确认", "no one has acknowledged yet")
        return self.t(f"{minutes}分钟内{zh}", f"{en} {minutes} min")

    def sanitize(self, text: str) -> str:
        """Group chats: no phone number, no full name, whatever free text carried them."""
        if self.audience is not Audience.GROUP:
            return text
        text = mask_phone(text)
        # Longest first: 欧阳明 before a resident called 欧阳.
        labels = (re.split(r"[（(]", n, maxsplit=1)[0] for n in self.ctx.residents_to_check)
        names = sorted({self.name, *labels}, key=len, reverse=True)
        for name in (n.strip() for n in names):
            if len(name) > 1:
                text = text.replace(name, mask_name(name))
        return text


def _body(w: _Writer, cut: _Cut) -> str:
    """The text before the acknowledgement part, for one `_Cut`."""
    c, kind, zh = w.ctx, w.kind, w.zh
    if kind is Kind.NOTICE:
        return _notice(w, cut)
    subject, what = w.subject(cut.address), w.what(value=cut.value and kind is not Kind.RESOLVED)

    def main() -> str:  # 张大爷（幸福小区3栋201）疑似跌倒; 张建国 (幸福小区 3-201): possible fall
        if zh:
            return subject + what
        return f"{subject}: {what}" if subject else what[:1].upper() + what[1:]

    def after() -> str:  # English follow-ups: "possible fall, 张建国 (...)"
        return f"{what}, {subject}" if subject else what

    flap = ""
    if c.flapping and w.audience is not Audience.FAMILY:
        flap = w.t("近期反复出现。", "It keeps recurring.")
    notes, note, cta = w.notes(cut.notes), w.note(cut.note), w.cta()
    others = w.told() if cut.others else ""
    if kind in (Kind.RAISED, Kind.UPDATED):
        worse = w.t("情况加重：", "Worse now. ") if kind is Kind.UPDATED else ""
        head = w.t(
            f"{w.prefix()}{worse}{main()}，{w.time}。", f"{w.prefix()}{worse}{main()}, {w.time}."
        )
        return w.join(head, w.sentence(cta, others), flap, notes, note)
    if kind is Kind.REMINDER:
        head = w.t(
            f"{w.prefix()}再次提醒：{main()}（{w.time}），{w.waited('尚无人确认', '')}。",
            f"{w.prefix()}Reminder: {after()}, {w.time}; {w.waited('', 'not acknowledged for')}.",
        )
        return w.join(head, w.sentence(cta), notes, note)
    if kind is Kind.ESCALATED:
        told = w.told(before=True) if cut.others else ""
        head = w.t(
            f"{w.prefix()}已升级：{w.waited('无人确认', '')}。{main()}，{w.time}。",
            f"{w.prefix()}Escalated: {w.waited('', 'unacknowledged for')}. {main()}, {w.time}.",
        )
        return w.join(head, w.sentence(cta, told), notes, note)
    by = (c.acked_by or "").strip()
    if kind is Kind.ACKNOWLEDGED:
        head = w.t(
            f"{w.prefix(settled=True)}{by or '已有人'}已确认（{w.time}）：{main()}。",
            f"{w.prefix(settled=True)}Acknowledged by {by or 'staff'} at {w.time}: {after()}.",
        )
        return w.join(head, note)
    if by:  # resolved by a person
        head = w.t(
            f"{w.prefix(settled=True)}{by}已处理（{w.time}）：{main()}。",
            f"{w.prefix(settled=True)}Resolved by {by} at {w.time}: {after()}.",
        )
    else:
        head = w.t(
            f"{w.prefix(settled=True)}已恢复（{w.time}）：{main()}。",
            f"{w.prefix(settled=True)}Cleared at {w.time}: {after()}.",
        )
    return w.join(head, flap, note)


def _notice(w: _Writer, cut: _Cut) -> str:
    c = w.ctx
    title = (c.notice_title or "").strip() or w.t("区域通知", "Area notice")
    text = _sentence_end(c.notice_text or "", w.lang)
    area = "" if w.audience is Audience.FAMILY else _address(w.lang, c.community, c.building)
    head = w.prefix() + title + (w.t(f"（{area}）", f" ({area})") if area else "")
    head += w.t("：", ": ") + text if text else w.t("。", ".")
    if w.audience is Audience.FAMILY:
        # Other residents' names never go to a family.
        who, workers = w.who(), w.workers()
        if not who:
            return head
        if workers and cut.others:
            many = "s" * (len(workers) > 1)
            tail = w.t(
                f"网格员{'、'.join(workers)}将联系{who}确认平安，请您也多加关注。",
                f"Grid worker{many} {', '.join(workers)} will check on {who}; "
                "please keep an eye on them too.",
            )
        else:
            tail = w.t(f"请多关注{who}的情况。", f"Please keep an eye on {who}.")
        return w.join(head, tail)
    names = [n.strip() for n in c.residents_to_check if n.strip()]
    if not names:
        return head
    if w.audience is Audience.GROUP:
        # A label may carry the home, "张建国（3栋201）": a group gets the masked name only.
        names = [mask_name(re.split(r"[（(]", n, maxsplit=1)[0].strip()) for n in names]
    shown, more = names[: cut.names], len(names) > cut.names
    if not shown:
        tail = w.t(
            f"请逐一确认{len(names)}位居民平安。", f"Please check on {len(names)} residents."
        )
    else:
        listed = w.t(
            "、".join(shown) + ("等" if more else ""), ", ".join(shown) + (" ..." if more else "")
        )
        tail = w.t(
            f"请逐一确认平安（{len(names)}人）：{listed}。",
            f"Please check on these {len(names)} residents: {listed}.",
        )
    return w.join(head, tail)


def _title(w: _Writer) -> str:
    c, kind = w.ctx, w.kind
    if kind is Kind.NOTICE:
        return w.prefix() + ((c.notice_title or "").strip() or w.t("区域通知", "Area notice"))
    what = w.what(value=False, grouped=False)
    place = w.who() or _address(w.lang, c.community, c.building)
    by = (c.acked_by or "").strip()
    label_zh, label_en, settled = {
        Kind.RAISED: ("", "", False),
        Kind.UPDATED: ("情况加重：", "Worse: ", False),
        Kind.REMINDER: ("再次提醒：", "Reminder: ", False),
        Kind.ESCALATED: ("已升级：", "Escalated: ", False),
        Kind.ACKNOWLEDGED: (
            f"{by or '已有人'}已确认：",
            f"Acknowledged by {by or 'staff'}: ",
            True,
        ),
        Kind.RESOLVED: (
            f"{by}已处理：" if by else "已恢复：",
            f"Resolved by {by}: " if by else "Cleared: ",
            True,
        ),
    }[kind]
    if w.zh:
        return f"{w.prefix(settled=settled)}{label_zh}{place}{what}"
    if kind is Kind.RAISED:
        return f"{w.prefix()}{place + ': ' if place else ''}{what}"
    return f"{w.prefix(settled=settled)}{label_en}{what}{', ' + place if place else ''}"


def _zone(tz: str | tzinfo) -> tzinfo:
    return ZoneInfo(tz) if isinstance(tz, str) else tz


def render(
    ctx: MessageContext,
    audience: Audience,
    lang: Lang = Lang.ZH,
    *,
    tz: str | tzinfo = DEFAULT_TZ,
) -> tuple[str, str]:
    """(title, body) of one message; the body is the SMS text and the WeChat content.

    Chinese messages keep to two SMS segments, and a family's to one before the
    acknowledgement part, English ones to three, whenever dropping optional parts in
    the order of `_CUTS` can; a supervisor's notice text is never cut.
    """
    w = _Writer(ctx, Audience(audience), Lang(lang), _zone(tz))
    ack = w.ack()
    # Chinese: two segments in all, family one before the link. English runs half as long
    # again and is UCS-2 as soon as a Chinese name appears: three.
    total = 2 if w.zh else 3
    before = 1 if w.audience is Audience.FAMILY and w.zh else total
    tried: list[tuple[int, str]] = []
    for cut in _CUTS:
        text = _body(w, cut) + ack
        over = max(sms_length(text) - total, sms_length(text[: len(text) - len(ack)]) - before, 0)
        if not over:
            break
        tried.append((over, text))
    else:
        # Nothing fits: the fullest text among those that miss by the least.
        text = min(tried, key=lambda t: t[0])[1]
    return w.sanitize(_title(w)), w.sanitize(text)


def _date_label(days: Sequence[datetime], lang: Lang) -> str:
    first, last = days[0], days[-1]
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    if lang is Lang.ZH:
        one = f"{first.month}月{first.day}日"
        return one if first.date() == last.date() else f"{one}至{last.month}月{last.day}日"
    one = f"{first.day} {months[first.month - 1]}"
    return one if first.date() == last.date() else f"{one} – {last.day} {months[last.month - 1]}"


_DIGEST_LINES: Final = 20  # per rule; a WeChat message, not an SMS, but still a glance


def digest(
    items: Sequence[MessageContext],
    audience: Audience,
    lang: Lang = Lang.ZH,
    *,
    tz: str | tzinfo = DEFAULT_TZ,
) -> tuple[str, str]:
    """(title, body) of the daily digest of information-level findings, grouped by rule."""
    audience, lang, zone = Audience(audience), Lang(lang), _zone(tz)
    zh = lang is Lang.ZH
    prefix = _PREFIX["info"][0] if zh else _PREFIX["info"][1] + " "
    if not items:
        title = prefix + ("每日汇总" if zh else "Daily digest")
        return title, title + ("：今日无提示信息。" if zh else ": nothing to report.")
    ordered = sorted(items, key=lambda i: (_ORDER.get(i.rule, len(_ORDER)), i.rule, i.at_ms))
    stamps = sorted(datetime.fromtimestamp(i.at_ms / 1000, zone) for i in items)
    several_days = stamps[0].date() != stamps[-1].date()
    label = _date_label(stamps, lang)
    title = prefix + (f"每日汇总（{label}）" if zh else f"Daily digest ({label})")
    lines = [title + (f"：共{len(items)}条。" if zh else f": {len(items)} items.")]
    for rule in dict.fromkeys(i.rule for i in ordered):
        group = [i for i in ordered if i.rule == rule]
        phrase = _rule(rule)
        name = phrase.zh if zh else phrase.en
        if phrase.care == "other":
            name += f"（{rule}）" if zh else f" ({rule})"
        lines.append(f"{name}（{len(group)}条）：" if zh else f"{name} ({len(group)}):")
        for item in group[:_DIGEST_LINES]:
            w = _Writer(item, audience, lang, zone)
            when = w.time
            if several_days:
                when = f"{w.date.month}/{w.date.day} {when}"
            inner = w.value_text(value=Kind(item.kind) is not Kind.RESOLVED)
            if Kind(item.kind) is Kind.RESOLVED:
                inner = w.t("，", ", ").join(p for p in (inner, w.t("已恢复", "cleared")) if p)
            line = f"{when} {w.subject() or '-'}"
            line += w.t(f"：{inner}", f": {inner}") if inner else ""
            lines.append(w.sanitize(line))
        if len(group) > _DIGEST_LINES:
            rest = len(group) - _DIGEST_LINES
            lines.append(f"……另有{rest}条" if zh else f"... and {rest} more")
    return title, "\n".join(lines)
