"""The outbox: queue a notification (idempotently by event id), claim rows with a lease,
settle each attempt, and read notifications back.

Claiming is one conditional UPDATE: rows that are pending, due, of a channel this worker
serves and not leased by a live worker get this worker's lease. On PostgreSQL the rows are
picked with FOR UPDATE SKIP LOCKED, so replicas claiming at once take different rows
instead of queueing on each other; SQLite runs one writer at a time, so the same UPDATE is
atomic there. A worker settles only rows it still holds (`lease_owner` = itself), so a
worker that lost its lease (it stalled past lease_seconds) never overwrites the outcome of
the replica that took the row over.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ferry.config import NotifySettings
from ferry.db.models import utcnow
from ferry.db.notify_models import (
    DEAD,
    FAILED,
    PENDING,
    SENT,
    ChannelState,
    Notification,
    OutboxRow,
)
from ferry.errors import FailedPrecondition, InvalidArgument, NotFound
from ferry.notify import retry as retry_schedule
from ferry.notify.channels.base import RETRY, Delivery, Outcome

OB: sa.Table = OutboxRow.__table__  # type: ignore[assignment]
N: sa.Table = Notification.__table__  # type: ignore[assignment]
C: sa.Table = ChannelState.__table__  # type: ignore[assignment]
MAX_ERROR = 1000


@dataclass(frozen=True)
class NewNotification:
    """A validated, rendered Send request: one outbox row per (channel, recipient)."""

    event_id: str
    deliveries: list[tuple[str, str]]  # (channel, recipient)
    subject: str
    text: str
    html: str = ""
    template: str = ""
    language: str = "en"
    variables: dict[str, Any] = field(default_factory=dict)
    requested_by: str = ""


@dataclass(frozen=True)
class View:
    """A notification with its outbox rows."""

    notification: Notification
    rows: list[OutboxRow]

    @property
    def attempts(self) -> int:
        return sum(r.attempts for r in self.rows)

    @property
    def last_error(self) -> str:
        errs = [r for r in self.rows if r.last_error]
        return max(errs, key=lambda r: r.id).last_error if errs else ""


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """`value` as aware UTC (SQLite hands back naive UTC datetimes)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def new_event_id() -> str:
    return f"evt-{uuid.uuid4()}"


def create(engine: Engine, new: NewNotification) -> tuple[View, bool]:
    """(notification, created): the new one with its outbox rows, or the earlier one with
    the same event id (nothing more is queued). The unique event id decides, so two Sends
    of one event at once still make one notification."""
    now = utcnow()
    nid = str(uuid.uuid4())
    channels = list(dict.fromkeys(c for c, _ in new.deliveries))
    recipients = list(dict.fromkeys(r for _, r in new.deliveries))
    notification = Notification(
        id=nid,
        event_id=new.event_id,
        channels=channels,
        recipients=recipients,
        template=new.template,
        language=new.language,
        variables=new.variables,
        subject=new.subject,
        text_body=new.text,
        html_body=new.html,
        status=PENDING,
        requested_by=new.requested_by,
        created_at=now,
        updated_at=now,
    )
    rows = [
        OutboxRow(
            notification_id=nid,
            channel=channel,
            recipient=recipient,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
        )
        for channel, recipient in dict.fromkeys(new.deliveries)
    ]
    try:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            s.add(notification)
            s.flush()  # the parent row first: the outbox rows refer to it
            s.add_all(rows)
    except sa_exc.IntegrityError:
        existing = _by_event(engine, new.event_id)
        if existing is None:
            raise
        return existing, False
    return View(notification, rows), True


def _by_event(engine: Engine, event_id: str) -> View | None:
    with Session(engine, expire_on_commit=False) as s:
        n = s.scalars(sa.select(Notification).where(Notification.event_id == event_id)).first()
        if n is None:
            return None
        return View(n, _rows(s, n.id))


def _rows(s: Session, nid: str) -> list[OutboxRow]:
    return list(
        s.scalars(
            sa.select(OutboxRow).where(OutboxRow.notification_id == nid).order_by(OutboxRow.id)
        )
    )


def get(engine: Engine, nid: str) -> View:
    """The notification `nid`, or NotFound naming it."""
    if not nid:
        raise InvalidArgument("id is required", field="id")
    with Session(engine, expire_on_commit=False) as s:
        n = s.get(Notification, nid)
        if n is None:
            raise NotFound(f"notification {nid!r} does not exist")
        return View(n, _rows(s, nid))


@dataclass(frozen=True)
class Page:
    items: list[View]
    next_token: str
    total: int


def list_page(engine: Engine, page_size: int, page_token: str = "", status: str = "") -> Page:
    """Notifications newest first, one page; the token is opaque."""
    if page_size < 0 or page_size > 200:
        raise InvalidArgument(f"page_size must be 1..200, got {page_size}", field="page_size")
    size = page_size or 50
    where: list[sa.ColumnElement[bool]] = []
    if status:
        where.append(N.c.status == status)
    with Session(engine, expire_on_commit=False) as s:
        total = s.execute(sa.select(sa.func.count()).select_from(N).where(*where)).scalar_one()
        q = sa.select(Notification).where(*where)
        if page_token:
            created, last_id = _decode_token(page_token)
            q = q.where(
                sa.or_(
                    Notification.created_at < created,
                    sa.and_(Notification.created_at == created, Notification.id < last_id),
                )
            )
        q = q.order_by(Notification.created_at.desc(), Notification.id.desc()).limit(size + 1)
        found = list(s.scalars(q))
        more = len(found) > size
        found = found[:size]
        by_id: dict[str, list[OutboxRow]] = {n.id: [] for n in found}
        if found:
            for r in s.scalars(
                sa.select(OutboxRow)
                .where(OutboxRow.notification_id.in_(list(by_id)))
                .order_by(OutboxRow.id)
            ):
                by_id[r.notification_id].append(r)
    token = _encode_token(found[-1]) if more else ""
    return Page([View(n, by_id[n.id]) for n in found], token, int(total))


def _encode_token(n: Notification) -> str:
    created = aware(n.created_at)
    assert created is not None
    return base64.urlsafe_b64encode(json.dumps([created.isoformat(), n.id]).encode()).decode()


def _decode_token(token: str) -> tuple[dt.datetime, str]:
    try:
        created, nid = json.loads(base64.urlsafe_b64decode(token.encode()))
        return dt.datetime.fromisoformat(created), str(nid)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument(
            "page_token is not one this service handed out", field="page_token"
        ) from None


# --- delivery ------------------------------------------------------------------------


def claim(
    engine: Engine,
    worker: str,
    channels: Sequence[str],
    limit: int,
    lease_seconds: float,
) -> list[Delivery]:
    """Lease up to `limit` due rows of `channels` to `worker` and return them with their
    content. Each claim counts as an attempt."""
    if not channels:
        return []
    now = utcnow()
    claimable = sa.and_(
        OB.c.status == PENDING,
        OB.c.next_attempt_at <= now,
        OB.c.channel.in_(list(channels)),
        sa.or_(OB.c.lease_until.is_(None), OB.c.lease_until < now),
    )
    pick = sa.select(OB.c.id).where(claimable).order_by(OB.c.next_attempt_at, OB.c.id).limit(limit)
    lease = {
        "lease_owner": worker,
        "lease_until": now + dt.timedelta(seconds=lease_seconds),
        "attempts": OB.c.attempts + 1,
    }
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Lock the picked rows first, then lease them: two statements, because in
            # `UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)` PostgreSQL may run
            # the subquery once per row (a generic plan made while the outbox was empty),
            # which is quadratic in the backlog.
            candidates = [r[0] for r in conn.execute(pick.with_for_update(skip_locked=True))]
            if not candidates:
                return []
            where = OB.c.id.in_(candidates)
        else:
            # SQLite: one statement, so the read and the write are one atomic step (a
            # separate SELECT would make the write fail on a stale WAL snapshot).
            where = OB.c.id.in_(pick.scalar_subquery())
        stmt = OB.update().where(where, claimable).values(**lease).returning(OB.c.id)
        ids = [r[0] for r in conn.execute(stmt)]
        if not ids:
            return []
        rows = conn.execute(
            sa.select(
                OB,
                N.c.event_id,
                N.c.subject,
                N.c.text_body,
                N.c.html_body,
                N.c.template,
                N.c.language,
                N.c.variables,
            )
            .join(N, N.c.id == OB.c.notification_id)
            .where(OB.c.id.in_(ids), OB.c.lease_owner == worker)
            .order_by(OB.c.id)
        ).all()
    return [
        Delivery(
            row_id=r.id,
            notification_id=r.notification_id,
            event_id=r.event_id,
            channel=r.channel,
            recipient=r.recipient,
            attempt=r.attempts,
            subject=r.subject,
            text=r.text_body,
            html=r.html_body,
            template=r.template,
            language=r.language,
            variables=dict(r.variables or {}),
        )
        for r in rows
    ]


def renew(engine: Engine, worker: str, row_ids: Sequence[int], lease_seconds: float) -> set[int]:
    """Extend `worker`'s lease on `row_ids`; the ids it still holds (a row whose lease ran
    out and went to another worker is not this worker's to send any more)."""
    if not row_ids:
        return set()
    until = utcnow() + dt.timedelta(seconds=lease_seconds)
    with engine.begin() as conn:
        return {
            r[0]
            for r in conn.execute(
                OB.update()
                .where(
                    OB.c.id.in_(list(row_ids)), OB.c.lease_owner == worker, OB.c.status == PENDING
                )
                .values(lease_until=until)
                .returning(OB.c.id)
            )
        }


@dataclass(frozen=True)
class Settled:
    """What settling one attempt did: the row's new status (pending means "retry later")."""

    delivery: Delivery
    status: str
    created_at: dt.datetime | None


def settle(
    engine: Engine,
    worker: str,
    results: Iterable[tuple[Delivery, Outcome]],
    settings: NotifySettings,
) -> list[Settled]:
    """Record each attempt's outcome on rows `worker` still holds, in one transaction, and
    bring each touched notification's status up to date."""
    now = utcnow()
    done: list[Settled] = []
    touched: set[str] = set()
    results = list(results)
    with engine.begin() as conn:
        # The common case, delivered, is one statement for the whole batch.
        sent = {d.row_id: d for d, out in results if out.status == SENT}
        if sent:
            for row_id, created in conn.execute(
                OB.update()
                .where(OB.c.id.in_(list(sent)), OB.c.lease_owner == worker)
                .values(status=SENT, sent_at=now, last_error="", lease_owner=None, lease_until=None)
                .returning(OB.c.id, OB.c.created_at)
            ):
                d = sent[row_id]
                done.append(Settled(d, SENT, aware(created)))
                touched.add(d.notification_id)
        for d, out in results:
            if out.status == SENT:
                continue
            error = out.error[:MAX_ERROR]
            held = sa.and_(OB.c.id == d.row_id, OB.c.lease_owner == worker)
            created = conn.execute(sa.select(OB.c.created_at).where(held)).scalar_one_or_none()
            if created is None:
                continue  # the lease went to another worker; its outcome counts
            created = aware(created)
            values: dict[str, Any] = {"lease_owner": None, "lease_until": None}
            if out.status == RETRY:
                when = retry_schedule.next_attempt(
                    settings, d.attempt, created or now, now, out.retry_after
                )
                status = PENDING if when is not None else DEAD
                values.update(status=status, last_error=error)
                if when is not None:
                    values["next_attempt_at"] = when
            else:
                status = FAILED
                values.update(status=FAILED, last_error=error)
            if conn.execute(OB.update().where(held).values(**values)).rowcount:
                done.append(Settled(d, status, created))
                touched.add(d.notification_id)
            if out.disable:
                _set_disabled(conn, out.disable, True, error, now)
        _refresh(conn, touched, now)
    return done


def _refresh(conn: sa.Connection, nids: Iterable[str], now: dt.datetime) -> None:
    """Each notification's status from its rows: pending while any row is; else the worst
    outcome (dead > failed > sent)."""
    ids = list(nids)
    if not ids:
        return
    counts: dict[str, set[str]] = {}
    for nid, status in conn.execute(
        sa.select(OB.c.notification_id, OB.c.status)
        .where(OB.c.notification_id.in_(ids))
        .group_by(OB.c.notification_id, OB.c.status)
    ):
        counts.setdefault(nid, set()).add(status)
    by_status: dict[str, list[str]] = {}
    for nid, statuses in counts.items():
        status = next((s for s in (PENDING, DEAD, FAILED) if s in statuses), SENT)
        by_status.setdefault(status, []).append(nid)
    for status, group in by_status.items():
        conn.execute(
            N.update()
            .where(N.c.id.in_(group), N.c.status != status)
            .values(status=status, updated_at=now)
        )


def retry(engine: Engine, nid: str) -> View:
    """Queue a notification's failed and dead rows again, attempts from zero, and switch
    their channels (and endpoints) back on. FailedPrecondition when none is failed/dead."""
    view = get(engine, nid)
    again = [r for r in view.rows if r.status in (FAILED, DEAD)]
    if not again:
        raise FailedPrecondition(
            f"notification {nid} has nothing failed or dead to retry ({view.notification.status})"
        )
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(
            OB.update()
            .where(OB.c.id.in_([r.id for r in again]), OB.c.status.in_([FAILED, DEAD]))
            .values(
                status=PENDING,
                attempts=0,
                next_attempt_at=now,
                created_at=now,  # the give-up clock starts over too
                lease_owner=None,
                lease_until=None,
            )
        )
        keys = {r.channel for r in again} | {f"{r.channel}/{r.recipient}" for r in again}
        conn.execute(C.delete().where(C.c.key.in_(list(keys))))
        _refresh(conn, [nid], now)
    return get(engine, nid)


def depth(engine: Engine) -> dict[str, int]:
    """Pending outbox rows per channel."""
    with engine.connect() as conn:
        return {
            ch: int(n)
            for ch, n in conn.execute(
                sa.select(OB.c.channel, sa.func.count())
                .where(OB.c.status == PENDING)
                .group_by(OB.c.channel)
            )
        }


def disabled(engine: Engine) -> dict[str, str]:
    """Switched-off channel keys and why."""
    with engine.connect() as conn:
        return {k: r for k, r in conn.execute(sa.select(C.c.key, C.c.reason).where(C.c.disabled))}


def _set_disabled(
    conn: sa.Connection, key: str, value: bool, reason: str, now: dt.datetime
) -> None:
    if conn.execute(
        C.update().where(C.c.key == key).values(disabled=value, reason=reason, updated_at=now)
    ).rowcount:
        return
    conn.execute(C.insert().values(key=key, disabled=value, reason=reason, updated_at=now))
