"""Reminders and escalations: an alert nobody has acknowledged yet."""

from __future__ import annotations

from alerts.templates.writer import Cut, Parts, Writer


def reminder(w: Writer, cut: Cut, p: Parts) -> str:
    """The alert again, and how long it has waited."""
    head = w.t(
        f"{w.prefix()}再次提醒：{p.main}（{w.time}），{w.waited('尚无人确认', '')}。",
        f"{w.prefix()}Reminder: {p.after}, {w.time}; {w.waited('', 'not acknowledged for')}.",
    )
    return w.join(head, w.sentence(p.cta), p.notes, p.note)


def escalated(w: Writer, cut: Cut, p: Parts) -> str:
    """To the next rung: that nobody answered, then the alert, and who was told before."""
    told = w.told(before=True) if cut.others else ""
    head = w.t(
        f"{w.prefix()}已升级：{w.waited('无人确认', '')}。{p.main}，{w.time}。",
        f"{w.prefix()}Escalated: {w.waited('', 'unacknowledged for')}. {p.main}, {w.time}.",
    )
    return w.join(head, w.sentence(p.cta, told), p.notes, p.note)
