"""Acknowledgements and resolutions: news that someone is on it, or that it is over."""

from __future__ import annotations

from alerts.templates.writer import Cut, Parts, Writer


def acknowledged(w: Writer, cut: Cut, p: Parts) -> str:
    """Who acknowledged the alert, and when."""
    by = (w.ctx.acked_by or "").strip()
    head = w.t(
        f"{w.prefix(settled=True)}{by or '已有人'}已确认（{w.time}）：{p.main}。",
        f"{w.prefix(settled=True)}Acknowledged by {by or 'staff'} at {w.time}: {p.after}.",
    )
    return w.join(head, p.note)


def resolved(w: Writer, cut: Cut, p: Parts) -> str:
    """Resolved by a person (`acked_by`), or cleared by itself."""
    by = (w.ctx.acked_by or "").strip()
    if by:
        head = w.t(
            f"{w.prefix(settled=True)}{by}已处理（{w.time}）：{p.main}。",
            f"{w.prefix(settled=True)}Resolved by {by} at {w.time}: {p.after}.",
        )
    else:
        head = w.t(
            f"{w.prefix(settled=True)}已恢复（{w.time}）：{p.main}。",
            f"{w.prefix(settled=True)}Cleared at {w.time}: {p.after}.",
        )
    return w.join(head, p.flap, p.note)
