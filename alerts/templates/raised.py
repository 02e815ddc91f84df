"""Alert messages: a new alert, or one that got worse."""

from __future__ import annotations

from alerts.templates.context import MessageKind
from alerts.templates.writer import Cut, Parts, Writer


def raised(w: Writer, cut: Cut, p: Parts) -> str:
    """What, where and when, what to do, who else was told."""
    worse = w.t("情况加重：", "Worse now. ") if w.kind is MessageKind.UPDATED else ""
    head = w.t(
        f"{w.prefix()}{worse}{p.main}，{w.time}。", f"{w.prefix()}{worse}{p.main}, {w.time}."
    )
    return w.join(head, w.sentence(p.cta, p.others), p.flap, p.notes, p.note)
