"""One message for one audience: its title and its text, cut to fit an SMS."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import tzinfo
from typing import Final

from alerts.templates.context import DEFAULT_TZ, Audience, Lang, MessageContext, MessageKind
from alerts.templates.ladder import escalated, reminder
from alerts.templates.notices import notice
from alerts.templates.raised import raised
from alerts.templates.segments import sms_length
from alerts.templates.settled import acknowledged, resolved
from alerts.templates.writer import CUTS, Cut, Parts, Writer, address, zone_of

# Each message family writes the text before the acknowledgement part, for one `Cut`.
_BODIES: Final[Mapping[MessageKind, Callable[[Writer, Cut, Parts], str]]] = {
    MessageKind.RAISED: raised,
    MessageKind.UPDATED: raised,
    MessageKind.REMINDER: reminder,
    MessageKind.ESCALATED: escalated,
    MessageKind.ACKNOWLEDGED: acknowledged,
    MessageKind.RESOLVED: resolved,
}


def _body(w: Writer, cut: Cut) -> str:
    """The text before the acknowledgement part, for one `Cut`."""
    if w.kind is MessageKind.NOTICE:
        return notice(w, cut)
    return _BODIES[w.kind](w, cut, w.parts(cut))


def _title(w: Writer) -> str:
    c, kind = w.ctx, w.kind
    if kind is MessageKind.NOTICE:
        return w.prefix() + ((c.notice_title or "").strip() or w.t("区域通知", "Area notice"))
    what = w.what(value=False, grouped=False)
    place = w.who() or address(w.lang, c.community, c.building)
    by = (c.acked_by or "").strip()
    label_zh, label_en, settled = {
        MessageKind.RAISED: ("", "", False),
        MessageKind.UPDATED: ("情况加重：", "Worse: ", False),
        MessageKind.REMINDER: ("再次提醒：", "Reminder: ", False),
        MessageKind.ESCALATED: ("已升级：", "Escalated: ", False),
        MessageKind.ACKNOWLEDGED: (
            f"{by or '已有人'}已确认：",
            f"Acknowledged by {by or 'staff'}: ",
            True,
        ),
        MessageKind.RESOLVED: (
            f"{by}已处理：" if by else "已恢复：",
            f"Resolved by {by}: " if by else "Cleared: ",
            True,
        ),
    }[kind]
    if w.zh:
        return f"{w.prefix(settled=settled)}{label_zh}{place}{what}"
    if kind is MessageKind.RAISED:
        return f"{w.prefix()}{place + ': ' if place else ''}{what}"
    return f"{w.prefix(settled=settled)}{label_en}{what}{', ' + place if place else ''}"


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
    the order of `CUTS` can; a supervisor's notice text is never cut.
    """
    w = Writer(ctx, Audience(audience), Lang(lang), zone_of(tz))
    ack = w.ack()
    # Chinese: two segments in all, family one before the link. English runs half as long
    # again and is UCS-2 as soon as a Chinese name appears: three.
    total = 2 if w.zh else 3
    before = 1 if w.audience is Audience.FAMILY and w.zh else total
    tried: list[tuple[int, str]] = []
    for cut in CUTS:
        text = _body(w, cut) + ack
        over = max(sms_length(text) - total, sms_length(text[: len(text) - len(ack)]) - before, 0)
        if not over:
            break
        tried.append((over, text))
    else:
        # Nothing fits: the fullest text among those that miss by the least.
        text = min(tried, key=lambda t: t[0])[1]
    return w.sanitize(_title(w)), w.sanitize(text)
