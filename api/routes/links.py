"""Acknowledgement links from SMS and WeChat messages: a small page, no login.

`GET /a/<token>` only shows what the alert is and a button; `POST` acknowledges.
Link previews (WeChat fetches every URL in a chat) must never acknowledge. The
token (alerts/links.py) names the alert and the person it was sent to; the page
shows the resident's name masked, since a forwarded link reaches others.
"""

from __future__ import annotations

from html import escape
from typing import Final

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from alerts import links
from alerts.exceptions import AlertNotFound, LifecycleError
from alerts.tables import ACKNOWLEDGED, RESOLVED, Alert, Notification
from alerts.templates import Audience, Lang, MessageContext, MessageKind, render
from api.deps import SessionDep
from api.routes.alerts import AlertsDep
from devices.tables import Resident

router = APIRouter(prefix="/a", include_in_schema=False)

_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # the token is in the URL
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
}
_STYLE: Final = (
    "body{font-family:sans-serif;max-width:28rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.6}p.en{color:#666;font-size:.9rem;margin-top:0}"
    "button{font-size:1.2rem;padding:.7rem 1.5rem;width:100%;background:#c0392b;color:#fff;"
    "border:0;border-radius:.4rem}"
)


def _page(
    status: int, title: str, title_en: str, *lines: tuple[str, str], form: bool = False
) -> HTMLResponse:
    """A page of Chinese lines, each with its English line below; every value escaped."""
    body = "".join(f"<p>{escape(zh)}</p><p class=en>{escape(en)}</p>" for zh, en in lines)
    if form:
        body += (
            '<form method="post"><button type="submit">我已知悉，马上处理</button></form>'
            "<p class=en>I am on it (acknowledge)</p>"
        )
    html = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1><p class=en>{escape(title_en)}</p>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _invalid(expired: bool) -> HTMLResponse:
    if expired:
        return _page(
            410,
            "链接已过期",
            "This link has expired",
            ("如需处理该告警，请登录系统或联系网格员。", "Log in or call the grid worker instead."),
        )
    return _page(
        404,
        "链接无效",
        "This link is not valid",
        ("请检查链接是否完整，或登录系统查看告警。", "Check the link, or log in to see the alert."),
    )


def _claim(alerts: AlertsDep, token: str) -> links.LinkClaim | HTMLResponse:
    secret = alerts.book.secret  # the key that signed the links (the API's own)
    claim = links.verify(secret, token, int(alerts.clock().timestamp()))
    if claim is None:
        # Valid at the epoch but not now: well signed, expired.
        return _invalid(expired=links.verify(secret, token, 0) is not None)
    return claim


async def _what(session: AsyncSession, alerts: AlertsDep, alert: Alert) -> list[tuple[str, str]]:
    """The alert as a group chat would say it (name masked, building only), and when."""
    name = None
    if alert.resident_id is not None:
        name = await session.scalar(select(Resident.name).where(Resident.id == alert.resident_id))
    ctx = MessageContext(
        rule=alert.rule,
        severity=alert.severity,
        kind=MessageKind.RAISED,
        at_ms=int(alert.opened_at.timestamp() * 1000),
        resident_name=name,
        building=alert.building,
        device_id=alert.device_id,
    )
    zone = alerts.book.zone
    title_zh, _ = render(ctx, Audience.GROUP, Lang.ZH, tz=zone)
    title_en, _ = render(ctx, Audience.GROUP, Lang.EN, tz=zone)
    local = alert.opened_at.astimezone(zone)
    return [
        (title_zh, title_en),
        (f"时间：{local.month}月{local.day}日 {local:%H:%M}", f"Time: {local:%Y-%m-%d %H:%M}"),
    ]


_RESOLVED: Final = ("该告警已解除，无需再确认。", "This alert is resolved already.")


def _settled(alert: Alert) -> tuple[str, str] | None:
    if alert.state == RESOLVED:
        return _RESOLVED
    if alert.state == ACKNOWLEDGED and alert.acked_at is not None:
        by = alert.acked_by or "他人"
        return (f"已由{by}确认，正在处理。", f"Acknowledged by {by}; someone is on it.")
    return None


@router.get("/{token:path}", response_class=HTMLResponse)
async def show(token: str, session: SessionDep, alerts: AlertsDep) -> HTMLResponse:
    """What the alert is, and a button; showing it acknowledges nothing."""
    claim = _claim(alerts, token)
    if isinstance(claim, HTMLResponse):
        return claim
    alert = await session.get(Alert, claim.alert_id)
    if alert is None:
        return _invalid(expired=False)
    what = await _what(session, alerts, alert)
    settled = _settled(alert)
    if settled is not None:
        return _page(200, "告警详情", "Alert", *what, settled)
    return _page(
        200,
        "确认告警",
        "Acknowledge this alert",
        *what,
        ("确认后将停止继续通知他人。", "Acknowledging stops further escalation."),
        form=True,
    )


@router.post("/{token:path}", response_class=HTMLResponse)
async def confirm(token: str, session: SessionDep, alerts: AlertsDep) -> HTMLResponse:
    """Acknowledge as the person the link was sent to."""
    claim = _claim(alerts, token)
    if isinstance(claim, HTMLResponse):
        return claim
    alert = await session.get(Alert, claim.alert_id)
    if alert is None:
        return _invalid(expired=False)
    name = await session.scalar(
        select(Notification.recipient_name)
        .where(
            Notification.alert_id == alert.id,
            Notification.recipient_key == claim.recipient_key,
        )
        .order_by(Notification.id)
        .limit(1)
    )
    what = await _what(session, alerts, alert)
    await session.commit()  # the service writes in its own transaction
    try:
        acked = await alerts.acknowledge(
            alert.id, name or claim.recipient_key, via="link", by_key=claim.recipient_key
        )
    except LifecycleError:
        return _page(409, "无需确认", "Nothing to acknowledge", *what, _RESOLVED)
    except AlertNotFound:  # gone between the page and the click
        return _invalid(expired=False)
    by = acked.acked_by or name or ""
    return _page(
        200,
        "谢谢，已确认",
        "Thank you: acknowledged",
        *what,
        (f"确认人：{by}。已收到通知的人会被告知，告警不再升级。", f"By {by}. Escalation stopped."),
    )
