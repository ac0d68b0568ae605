"""What a channel plugin is handed and what it answers.

A channel gets a batch of claimed deliveries (all of its own channel) and returns one
Outcome per delivery, in order. It never raises for a delivery's own trouble: a refused
recipient is `failed`, a server that is down is `retry`. Whatever it raises anyway retries
the whole batch (the worker records the exception's type only, never its text, so no
server detail or secret reaches a stored message).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The group's contract lives with every other group's (ferry.contracts).
from ferry.contracts import Channel as Channel

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
    # The mail address of the notification's school (`schools.sender`, docs/tenants.md),
    # "" when it has none: a mail channel sends from it instead of its own from address.
    sender: str = ""

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
