"""Several alerts to one worker in one message: a burst is one message per pass, not a flood.

A grid worker with a hundred residents hears of a heat wave's hundred low-SpO2 alerts in
a few messages, each listing its alerts with their acknowledgement links, instead of a
hundred (docs/alerts.md, "Bundles"). Families always get their own resident's message.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from alerts.templates.context import Lang
from alerts.templates.phrases import PREFIX

_LINES: Final = 30  # a WeChat message, not an SMS; past this, "and N more"


def bundle(
    items: Sequence[tuple[str, str]], severity: str, lang: Lang = Lang.ZH
) -> tuple[str, str]:
    """(title, body) of one message for several alerts: `items` are (title, ack URL) each.

    `severity` is the most severe of them: it sets the prefix.
    """
    zh = Lang(lang) is Lang.ZH
    prefix_zh, prefix_en = PREFIX.get(severity, PREFIX["info"])
    n = len(items)
    title = f"{prefix_zh}{n}条告警待处理" if zh else f"{prefix_en} {n} alerts to handle"
    lines = [title + ("，请逐条确认：" if zh else "; acknowledge each:")]
    for i, (item, url) in enumerate(items[:_LINES], 1):
        ack = f"（确认：{url}）" if zh else f" (acknowledge: {url})"
        lines.append(f"{i}. {item}{ack if url else ''}")
    if n > _LINES:
        lines.append(f"……另有{n - _LINES}条" if zh else f"... and {n - _LINES} more")
    return title, "\n".join(lines)
