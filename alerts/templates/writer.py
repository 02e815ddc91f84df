"""The pieces of one message for one audience and language: names, addresses, phrases, cuts."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Final
from zoneinfo import ZoneInfo

from alerts.templates.context import Audience, Lang, MessageContext, MessageKind
from alerts.templates.phrases import CTA, PREFIX, rule_phrase
from core.logs import mask_name
from core.phones import mask_phone

# Two-character surnames, so 欧阳建国 becomes 欧阳大爷 and not 欧大爷.
_SURNAMES_2: Final = (
    "欧阳司马上官诸葛东方皇甫尉迟公孙慕容长孙"
    "宇文司徒夏侯轩辕令狐钟离澹台公冶太史申屠"
    "闻人南宫呼延端木百里东郭西门第五"
)
_COMPOUND_SURNAMES: Final = frozenset(_SURNAMES_2[i : i + 2] for i in range(0, len(_SURNAMES_2), 2))
_HAN: Final = re.compile(r"^[\u4e00-\u9fff]+$")


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


def address(
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


def sentence_end(text: str, lang: Lang) -> str:
    """The text with one full stop at its end (none when it is empty)."""
    text = text.strip().rstrip("。．.；;，,、 ")
    return text + ("。" if lang is Lang.ZH else ".") if text else ""


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


@dataclass(frozen=True, slots=True)
class Cut:
    """How much of a message to keep; `CUTS` tries them in order until one fits."""

    notes: int = 40  # characters of health notes (workers only)
    others: bool = True  # "网格员王芳已同时收到通知"
    address: int = 0  # 0 all, 1 without the unit, 2 without the community, 3 none
    value: bool = True
    note: int = 60  # characters of the acknowledging person's note
    names: int = 10  # residents listed in an area notice


CUTS: Final = (
    Cut(),
    Cut(notes=16),
    Cut(notes=0),
    Cut(notes=0, others=False),
    Cut(notes=0, others=False, address=1),
    Cut(notes=0, others=False, address=2),
    Cut(notes=0, others=False, address=3),
    Cut(notes=0, others=False, address=3, value=False),
    Cut(notes=0, others=False, address=3, value=False, note=16, names=5),
    Cut(notes=0, others=False, address=3, value=False, note=0, names=0),
)
_STAFF: Final = frozenset({Audience.WORKER, Audience.SUPERVISOR, Audience.DUTY})


def zone_of(tz: str | tzinfo) -> tzinfo:
    """A time zone, from its name or as it is."""
    return ZoneInfo(tz) if isinstance(tz, str) else tz


@dataclass(frozen=True, slots=True)
class Parts:
    """The pieces of an alert message (`Writer.parts`)."""

    main: str  # who, where and what: 张大爷（幸福小区3栋201）疑似跌倒
    after: str  # English follow-ups: "possible fall, 张建国 (...)"
    flap: str
    notes: str
    note: str
    cta: str
    others: str  # the grid workers told as well


class Writer:
    """The pieces of one message for one audience and language."""

    def __init__(self, ctx: MessageContext, audience: Audience, lang: Lang, zone: tzinfo) -> None:
        self.ctx, self.audience, self.lang = ctx, audience, lang
        self.zh = lang is Lang.ZH
        self.kind = MessageKind(ctx.kind)
        local = datetime.fromtimestamp(ctx.at_ms / 1000, zone)
        self.time, self.date, self.year = local.strftime("%H:%M"), local.date(), local.year
        self.rule = rule_phrase(ctx.rule)
        self.name = (ctx.resident_name or "").strip()

    def parts(self, cut: Cut) -> Parts:
        """The pieces every alert message is made of, for one `Cut`."""
        kind = self.kind
        subject = self.subject(cut.address)
        what = self.what(value=cut.value and kind is not MessageKind.RESOLVED)
        # 张大爷（幸福小区3栋201）疑似跌倒; 张建国 (幸福小区 3-201): possible fall
        if self.zh:
            main = subject + what
        else:
            main = f"{subject}: {what}" if subject else what[:1].upper() + what[1:]
        flap = ""
        if self.ctx.flapping and self.audience is not Audience.FAMILY:
            flap = self.t("近期反复出现。", "It keeps recurring.")
        return Parts(
            main=main,
            after=f"{what}, {subject}" if subject else what,
            flap=flap,
            notes=self.notes(cut.notes),
            note=self.note(cut.note),
            cta=self.cta(),
            others=self.told() if cut.others else "",
        )

    def t(self, zh: str, en: str) -> str:
        """The text in the message's language."""
        return zh if self.zh else en

    def prefix(self, *, settled: bool = False) -> str:
        """【紧急】, 【提醒】 or 【通知】 (news that it is settled is a notice)."""
        # An acknowledgement or an all-clear is news, not a new emergency.
        zh, en = PREFIX.get("info" if settled else self.ctx.severity, PREFIX["info"])
        return self.t(zh, en + " ")

    def who(self) -> str:
        """The resident as this audience names them: 张大爷 for a family, masked for a group."""
        if not self.name:
            return ""
        if self.audience is Audience.GROUP:
            return mask_name(self.name)
        if self.audience is Audience.FAMILY and self.zh:
            return _polite(self.name, self.ctx.gender, self.ctx.birth_year, self.year)
        return self.name

    def where(self, level: int = 0) -> str:
        """The address, shorter at each `level` (a `Cut`'s address)."""
        c = self.ctx
        if level >= 3:
            return ""
        if self.audience is Audience.GROUP or not self.name:
            # Group chats: the building, never the door. Bins and buildings have no door.
            return address(self.lang, c.community if level < 2 else None, c.building)
        return address(
            self.lang,
            c.community if level < 2 else None,
            c.building,
            c.unit if level < 1 else None,
            c.room,
            full=self.audience in _STAFF,
        )

    def subject(self, level: int = 0) -> str:
        """Who and where (or which device): 张大爷（幸福小区3栋201）."""
        who, where, device = self.who(), self.where(level), self.ctx.device_id
        inner = where if who else device if where else ""
        head = who or where or (self.t("设备", "device ") + device if device else "")
        return head + (self.t(f"（{inner}）", f" ({inner})") if inner else "")

    def value_text(self, *, value: bool = True) -> str:
        """The reading that raised the alert, and the rule's tag: 118次/分."""
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
        """What happened: 心率持续过高（118次/分）, and what joined it."""
        rule = self.rule
        base = self.t(rule.zh, rule.en)
        if not self.name and (rule.device_zh or rule.device_en):
            base = self.t(rule.device_zh, rule.device_en)
        inner = self.value_text(value=value)
        text = base + (self.t(f"（{inner}）", f" ({inner})") if inner else "")
        if grouped:
            extra = [
                rule_phrase(r) for r in dict.fromkeys(self.ctx.grouped_rules) if r != self.ctx.rule
            ]
            if extra:
                phrases = [self.t(r.zh, r.en) for r in extra]
                text += self.t("及" + "、".join(phrases), " and " + ", ".join(phrases))
        return text

    def cta(self) -> str:
        """What this audience should do about it."""
        care, critical = self.rule.care, self.ctx.severity == "critical"
        if self.audience is Audience.FAMILY:
            group = "family"
        elif self.audience in (Audience.SUPERVISOR, Audience.DUTY):
            group, care = "lead", "urgent" if critical or care in ("urgent", "fire") else "other"
        else:
            group = "worker"
        if critical and care in ("vital", "check", "other"):
            care = "urgent"
        zh, en = CTA.get((care, group)) or CTA[("other", group)]
        return self.t(zh, en)

    def workers(self) -> list[str]:
        """The names of the grid workers told as well."""
        return [n.strip() for n in self.ctx.worker_names if n.strip()]

    def told(self, *, before: bool = False) -> str:
        """That the grid workers were told too (`before`: earlier on the ladder)."""
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
        """The resident's health notes, for a grid worker only, cut to `limit` characters."""
        notes = (self.ctx.health_notes or "").strip()
        if self.audience is not Audience.WORKER or not notes or limit <= 0:
            return ""
        return sentence_end(self.t("健康备注：", "Health notes: ") + _clip(notes, limit), self.lang)

    def note(self, limit: int) -> str:
        """The acknowledging or resolving person's note, cut to `limit` characters."""
        note = (self.ctx.note or "").strip()
        if not note or limit <= 0:
            return ""
        return sentence_end(self.t("说明：", "Note: ") + _clip(note, limit), self.lang)

    def ack(self) -> str:
        """How to acknowledge (or report back on a notice): the link last."""
        if self.kind in (MessageKind.ACKNOWLEDGED, MessageKind.RESOLVED):
            return ""
        url, code = (self.ctx.ack_url or "").strip(), (self.ctx.ack_code or "").strip()
        notice = self.kind is MessageKind.NOTICE
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
        """The non-empty parts as one sentence."""
        kept = [p for p in parts if p]
        if not kept:
            return ""
        return sentence_end(self.t("；", "; ").join(kept), self.lang)

    def join(self, *sentences: str) -> str:
        """The non-empty sentences as one text."""
        return self.t("", " ").join(s for s in sentences if s)

    def waited(self, zh: str, en: str) -> str:
        """How long nobody has acknowledged it."""
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
