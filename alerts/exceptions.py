"""The alerts' errors: one root, each with a Chinese and an English message, no HTTP status."""

from __future__ import annotations

__all__ = [
    "AlertNotFound",
    "AlertsError",
    "ChannelConfigError",
    "ChannelTemplateError",
    "LifecycleError",
    "NoticeAreaError",
    "NoticeError",
    "NoticeForbidden",
    "NoticeNotFound",
    "SmsUrlError",
]


class AlertsError(Exception):
    """Something the alerts refuse; `message` is for people (Chinese), `message_en` for logs."""

    def __init__(self, message: str, message_en: str | None = None) -> None:
        message_en = message if message_en is None else message_en
        super().__init__(message_en)
        self.message = message
        self.message_en = message_en


class LifecycleError(AlertsError):
    """A change the lifecycle does not allow (acknowledging a resolved alert, say)."""


class AlertNotFound(AlertsError):
    """No alert of that id."""

    def __init__(self, alert_id: int) -> None:
        super().__init__("告警不存在", f"no alert {alert_id}")
        self.alert_id = alert_id


class ChannelConfigError(AlertsError, ValueError):
    """An SMS or WeChat URL template that cannot work; the message names the variable."""


class ChannelTemplateError(AlertsError, ValueError):
    """A channel URL template names a placeholder the person has no value for."""


class SmsUrlError(AlertsError, ValueError):
    """An SMS channel URL that cannot work: missing credentials, template, phone..."""


class NoticeError(AlertsError):
    """An area notice refused; `code` is the machine-readable reason (`no_residents`)."""

    def __init__(self, code: str, message: str, message_en: str) -> None:
        super().__init__(message, message_en)
        self.code = code


class NoticeForbidden(NoticeError):
    """The caller's role may not do this to a notice."""

    def __init__(self, message: str, message_en: str) -> None:
        super().__init__("forbidden", message, message_en)


class NoticeAreaError(NoticeError):
    """The area names nothing, or nobody the caller may see lives in it."""


class NoticeNotFound(NoticeError):
    """No such notice, or no such resident in it, that the caller may see."""

    def __init__(self, what_zh: str, what_en: str) -> None:
        super().__init__("not_found", f"未找到{what_zh}", f"{what_en} not found")
