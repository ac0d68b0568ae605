"""The `log` channel: each notification is one structured log line (laptops, `make run`)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from ferry.config import Strict
from ferry.notify.channels.base import Delivery, Health, Outcome, sent

log = logging.getLogger("ferry.notify.log")


class LogSettings(Strict):
    # Also log the plain text body (off: only subject, recipient and ids).
    include_body: bool = False


class LogChannel:
    name = "log"
    # A log line written twice after a crash reaches nobody twice: this channel's rows are
    # settled with the batch (one statement), not one by one like mail and webhooks.
    settle_each = False
    settings_model: ClassVar[type[Strict]] = LogSettings

    def __init__(self, app: Any = None) -> None:
        settings = app.plugin_settings("ferry.channels", "log") if app is not None else None
        self.settings: LogSettings = settings or LogSettings()

    def validate_recipient(self, recipient: str) -> str:
        from ferry.addresses import parse_address

        return parse_address(recipient)

    def send(self, deliveries: list[Delivery]) -> list[Outcome]:
        for d in deliveries:
            extra: dict[str, Any] = {
                "event": "notification",
                "notification_id": d.notification_id,
                "event_id": d.event_id,
                "message_id": d.stable_id,
                "recipient": d.recipient,
                "subject": d.subject,
                "attempt": d.attempt,
            }
            if self.settings.include_body:
                extra["body"] = d.text
            log.info("notify %s: %s", d.recipient, d.subject, extra=extra)
        return [sent() for _ in deliveries]

    def health(self) -> Health:
        return Health(True)
