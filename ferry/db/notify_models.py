"""The notify service's tables: notifications, their outbox rows, and channel state.

A notification is what a caller asked for (one event id, rendered once); an outbox row is
one delivery of it: one (notification, channel, recipient), unique on that, claimed by a
worker with a lease and retried on a schedule until it is sent, failed or dead.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ferry.db.models import Base, Id, Tenant, utcnow

PENDING = "pending"
SENT = "sent"
FAILED = "failed"
DEAD = "dead"
SETTLED = (SENT, FAILED, DEAD)


class Notification(Tenant, Base):
    __tablename__ = "notifications"
    __table_args__ = (UniqueConstraint("school_id", "event_id"), Index(None, "created_at", "id"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200))
    channels: Mapped[list[str]] = mapped_column(JSON, default=list)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    template: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str] = mapped_column(String(8), default="en")
    variables: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    subject: Mapped[str] = mapped_column(Text, default="")
    text_body: Mapped[str] = mapped_column(Text, default="")
    html_body: Mapped[str] = mapped_column(Text, default="")
    # Pending until every outbox row settled; then the worst outcome (dead > failed > sent).
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxRow(Tenant, Base):
    __tablename__ = "notify_outbox"
    __table_args__ = (
        UniqueConstraint("notification_id", "channel", "recipient"),
        Index(None, "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("notifications.id", ondelete="CASCADE")
    )
    channel: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ChannelState(Base):
    """A channel (or one webhook endpoint, `webhook/<name>`) switched off by what it
    answered (HTTP 410 Gone); RetryNotification on one of its rows switches it on again."""

    __tablename__ = "notify_channel_state"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


__all__ = ["ChannelState", "Notification", "OutboxRow"]
