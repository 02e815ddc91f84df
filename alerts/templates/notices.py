"""Area notices: a supervisor's warning for an area, and the residents to check on."""

from __future__ import annotations

import re

from alerts.templates.context import Audience
from alerts.templates.writer import Cut, Writer, address, sentence_end
from core.logs import mask_name


def notice(w: Writer, cut: Cut) -> str:
    """The notice, and whom to check on (a family: only their own relative)."""
    c = w.ctx
    title = (c.notice_title or "").strip() or w.t("区域通知", "Area notice")
    text = sentence_end(c.notice_text or "", w.lang)
    area = "" if w.audience is Audience.FAMILY else address(w.lang, c.community, c.building)
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
