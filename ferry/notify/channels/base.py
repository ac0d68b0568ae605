"""What a channel plugin is handed and what it answers.

A channel gets a batch of claimed deliveries (all of its own channel) and returns one
Outcome per delivery, in order. It never raises for a delivery's own trouble: a refused
recipient is `failed`, a server that is down is `retry`. Whatever it raises anyway retries
the whole batch (the worker records the exception's type only, never its text, so no
server detail or secret reaches a stored message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

SENT = "sent"
RETRY = "retry"
FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """One outbox row to deliver, with the notification's rendered content."""

    row_id: int
    notification_id: str
    event_id: str
    channel: str
    recipient: str
    attempt: int  # 1 for the first try
    subject: str
    text: str
    html: str
    template: str = ""
    language: str = "en"
    variables: dict[str, Any] = field(default_factory=dict)

    @property
    def stable_id(self) -> str:
        """The same on every attempt of this row: Message-ID's left part, webhook-id."""
        return f"{self.notification_id}.{self.row_id}"


@dataclass(frozen=True)
class Outcome:
    status: str  # sent | retry | failed
    error: str = ""
    # Seconds the other side asked us to wait (Retry-After); None: the schedule decides.
    retry_after: float | None = None
    # A key (channel or channel/endpoint) to switch off, e.g. after HTTP 410 Gone.
    disable: str = ""


def sent() -> Outcome:
    return Outcome(SENT)


def retry(error: str, after: float | None = None) -> Outcome:
    return Outcome(RETRY, error, after)


def failed(error: str, disable: str = "") -> Outcome:
    return Outcome(FAILED, error, disable=disable)


@dataclass(frozen=True)
class Health:
    healthy: bool
    detail: str = ""


class Channel(Protocol):
    """A `ferry.channels` plugin: built as `Class(app)`, settings in plugins.channels.<name>.

    `validate_recipient` returns the recipient as stored or raises ValueError saying what is
    wrong with it; `default_recipients` is who gets a notification that names none (a
    webhook's endpoints; mail channels have none). A delivered row is settled the moment
    `send` returns for it (a crash resends at most the delivery in flight) unless the
    channel sets `settle_each = False` (the log channel: a repeated log line reaches
    nobody twice, so its rows are settled with their batch).
    """

    name: str

    def validate_recipient(self, recipient: str) -> str: ...

    def send(self, deliveries: list[Delivery]) -> list[Outcome]: ...

    def health(self) -> Health: ...
