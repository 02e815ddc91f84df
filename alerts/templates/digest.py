"""The daily digest: a grid's information-level findings of the day, grouped by rule."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Final

from alerts.templates.context import DEFAULT_TZ, Audience, Lang, MessageContext, MessageKind
from alerts.templates.phrases import ORDER, PREFIX, rule_phrase
from alerts.templates.writer import Writer, zone_of


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
    audience, lang, zone = Audience(audience), Lang(lang), zone_of(tz)
    zh = lang is Lang.ZH
    prefix = PREFIX["info"][0] if zh else PREFIX["info"][1] + " "
    if not items:
        title = prefix + ("每日汇总" if zh else "Daily digest")
        return title, title + ("：今日无提示信息。" if zh else ": nothing to report.")
    ordered = sorted(items, key=lambda i: (ORDER.get(i.rule, len(ORDER)), i.rule, i.at_ms))
    stamps = sorted(datetime.fromtimestamp(i.at_ms / 1000, zone) for i in items)
    several_days = stamps[0].date() != stamps[-1].date()
    label = _date_label(stamps, lang)
    title = prefix + (f"每日汇总（{label}）" if zh else f"Daily digest ({label})")
    lines = [title + (f"：共{len(items)}条。" if zh else f": {len(items)} items.")]
    for rule in dict.fromkeys(i.rule for i in ordered):
        group = [i for i in ordered if i.rule == rule]
        phrase = rule_phrase(rule)
        name = phrase.zh if zh else phrase.en
        if phrase.care == "other":
            name += f"（{rule}）" if zh else f" ({rule})"
        lines.append(f"{name}（{len(group)}条）：" if zh else f"{name} ({len(group)}):")
        for item in group[:_DIGEST_LINES]:
            w = Writer(item, audience, lang, zone)
            when = w.time
            if several_days:
                when = f"{w.date.month}/{w.date.day} {when}"
            inner = w.value_text(value=MessageKind(item.kind) is not MessageKind.RESOLVED)
            if MessageKind(item.kind) is MessageKind.RESOLVED:
                inner = w.t("，", ", ").join(p for p in (inner, w.t("已恢复", "cleared")) if p)
            line = f"{when} {w.subject() or '-'}"
            line += w.t(f"：{inner}", f": {inner}") if inner else ""
            lines.append(w.sanitize(line))
        if len(group) > _DIGEST_LINES:
            rest = len(group) - _DIGEST_LINES
            lines.append(f"……另有{rest}条" if zh else f"... and {rest} more")
    return title, "\n".join(lines)
