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

import datetime as dt
import re
import sys
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ferry.config import NotifySettings
from ferry.db import tenant
from ferry.db.models import School, utcnow
from ferry.db.models import aware as aware
from ferry.db.notify_models import (
    DEAD,
    FAILED,
    PENDING,
    SENT,
    ChannelState,
    Notification,
    OutboxRow,
)
from ferry.db.pages import Page, counter, newest_first
from ferry.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from ferry.notify import retry as retry_schedule
from ferry.notify.channels.base import RETRY, Delivery, Outcome

OB: sa.Table = OutboxRow.__table__  # type: ignore[assignment]
SC: sa.Table = School.__table__  # type: ignore[assignment]


def _mine(table: sa.Table) -> sa.ColumnElement[bool]:
    """The application scope: rows of the acting school (docs/tenants.md); row-level
    security is the second wall, and on SQLite or as a superuser the only one is this."""
    return table.c.school_id == tenant.school_id()


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


_SCOPED = re.compile(r"~[0-9a-f]{16}/")


def public_event_id(stored: str) -> str:
    """An event id as its caller gave it: without the scope a caller's ids are stored
    under (ferry.notify.core.event_scope), which is the outbox's business alone."""
    m = _SCOPED.match(stored)
    return stored[m.end() :] if m else stored


def new_event_id() -> str:
    return f"evt-{uuid.uuid4()}"


def create(engine: Engine, new: NewNotification) -> tuple[View, bool]:
    """(notification, created): the new one with its outbox rows, or the earlier one with
    the same event id (nothing more is queued). The unique event id decides, so two Sends
    of one event at once still make one notification."""
    return create_many(engine, [new])[0]


def create_many(
    engine: Engine | sa.Connection, news: Sequence[NewNotification]
) -> list[tuple[View, bool]]:
    """`create` for several notifications in one transaction and two INSERTs however many
    there are: each result in order. An event id stored already, or given twice here, is
    the earlier notification (created False). Given a Connection, the rows are written in
    its transaction (committed with the caller's own work) and an event id stored already
    is read back in it too."""
    if isinstance(engine, sa.Connection):
        return _create_in(engine, news)
    with engine.begin() as conn:
        out = _create_in(conn, news)
    return out


def create_group(engine: Engine, news: Sequence[NewNotification]) -> list[tuple[View, bool]]:
    """One Send's notifications (one per language, ferry.notify.core.send) in one
    transaction: the first, and the others only when the first is new. An earlier first
    (the same event id sent before) is the whole answer and nothing more is written, so a
    repeat never sends to anyone twice, whichever languages its recipients read now. A
    later one whose event id is taken already (a caller's own `x:el`) changes nothing and
    is INVALID_ARGUMENT naming event_id."""
    with engine.begin() as conn:
        first = _create_in(conn, news[:1])
        if not first[0][1]:
            return first
        rest = _create_in(conn, news[1:])
        for new, (_view, created) in zip(news[1:], rest, strict=True):
            if not created:
                raise InvalidArgument(
                    f"event_id: {public_event_id(new.event_id)!r}, which this Send needs for "
                    "its recipients in another language, names an earlier notification; "
                    "choose another event id",
                    field="event_id",
                )
        return [*first, *rest]


def _create_in(conn: sa.Connection, news: Sequence[NewNotification]) -> list[tuple[View, bool]]:
    now = utcnow()
    firsts: dict[str, NewNotification] = {}
    for new in news:
        firsts.setdefault(new.event_id, new)
    made: dict[str, Notification] = {}
    for event, new in firsts.items():
        made[event] = Notification(
            id=str(uuid.uuid4()),
            event_id=event,
            channels=list(dict.fromkeys(c for c, _ in new.deliveries)),
            recipients=list(dict.fromkeys(r for _, r in new.deliveries)),
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
    # ON CONFLICT DO NOTHING (PostgreSQL and SQLite): an event id stored already, or by a
    # concurrent transaction that commits first (PostgreSQL waits for it), inserts
    # nothing and is read back below; the rest of the batch goes on.
    insert = _dialect_insert(conn)(N).on_conflict_do_nothing(
        index_elements=["school_id", "event_id"]  # event ids are per school
    )
    fresh = {
        r[0]
        for r in conn.execute(
            insert.returning(N.c.event_id),
            [
                # The school is filled by its default: the acting school's.
                {c.name: getattr(n, c.name) for c in N.columns if c.name != "school_id"}
                for n in made.values()
            ],
        )
    }
    rows: dict[str, list[OutboxRow]] = {}
    children = [
        OutboxRow(
            notification_id=made[event].id,
            channel=channel,
            recipient=recipient,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error="",
            created_at=now,
        )
        for event, new in firsts.items()
        if event in fresh
        for channel, recipient in dict.fromkeys(new.deliveries)
    ]
    if children:
        ids = conn.execute(
            OB.insert().returning(OB.c.id, sort_by_parameter_order=True),
            [
                # The school is filled by its default: the acting school's.
                {
                    c.name: getattr(r, c.name)
                    for c in OB.columns
                    if c.name not in ("id", "school_id")
                }
                for r in children
            ],
        ).scalars()
        for row, row_id in zip(children, ids, strict=True):
            row.id = row_id
            rows.setdefault(row.notification_id, []).append(row)
    views = {e: View(made[e], rows.get(made[e].id, [])) for e in fresh}
    earlier = [e for e in firsts if e not in fresh]
    if earlier:
        views.update(_by_events(conn, earlier))
    out: list[tuple[View, bool]] = []
    returned: set[str] = set()
    for new in news:
        view = views.get(new.event_id)
        if view is None:  # inserted by a transaction that rolled back since: gone
            raise Unavailable(f"event {new.event_id!r} could not be stored; send it again")
        out.append((view, new.event_id in fresh and new.event_id not in returned))
        returned.add(new.event_id)
    return out


def _dialect_insert(conn: sa.Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _deliveries_of(s: Session, found: Sequence[Notification]) -> dict[str, list[OutboxRow]]:
    """The outbox rows of each notification in `found`, by notification id, in id order."""
    by_id: dict[str, list[OutboxRow]] = {n.id: [] for n in found}
    if found:
        for r in s.scalars(
            sa.select(OutboxRow)
            .where(OutboxRow.notification_id.in_(list(by_id)), _mine(OB))
            .order_by(OutboxRow.id)
        ):
            by_id[r.notification_id].append(r)
    return by_id


def _by_events(conn: sa.Connection, events: Sequence[str]) -> dict[str, View]:
    with Session(bind=conn, expire_on_commit=False) as s:
        found = list(
            s.scalars(sa.select(Notification).where(Notification.event_id.in_(events), _mine(N)))
        )
        by_id = _deliveries_of(s, found)
        for obj in [*found, *(r for rs in by_id.values() for r in rs)]:
            s.expunge(obj)
    return {n.event_id: View(n, by_id[n.id]) for n in found}


class GroupCommit:
    """`create` from many threads at once, in shared transactions (group commit).

    A caller that finds no write under way writes everything queued (its own first) in
    one transaction; callers arriving meanwhile queue, and the next of them writes all
    of theirs at once when that transaction ends. Alone, a Send is written at once; under
    load, N concurrent Sends cost a few statements and one commit instead of N of each.
    """

    def __init__(self, engine: Engine, max_batch: int = 200) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Queued] = []
        self._busy = False

    def create(self, new: NewNotification) -> tuple[View, bool]:
        item = _Queued(new)
        with self._cond:
            self._queue.append(item)
            while not item.done:
                if self._busy:
                    self._cond.wait()
                    continue
                self._busy = True
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                self._cond.release()
                try:
                    _settle_batch(self.engine, batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if item.error is not None:
            raise item.error
        assert item.result is not None
        return item.result


@dataclass
class _Queued:
    new: NewNotification
    done: bool = False
    result: tuple[View, bool] | None = None
    error: BaseException | None = None


def _settle_batch(engine: Engine, batch: list[_Queued]) -> None:
    try:
        results = create_many(engine, [q.new for q in batch])
    except Exception:
        if len(batch) == 1:
            batch[0].error = sys.exc_info()[1]
            batch[0].done = True
            return
        # One bad request must not fail the others: each on its own.
        for q in batch:
            _settle_batch(engine, [q])
        return
    for q, r in zip(batch, results, strict=True):
        q.result, q.done = r, True


def _by_event(engine: Engine, event_id: str) -> View | None:
    with Session(engine, expire_on_commit=False) as s:
        n = s.scalars(
            sa.select(Notification).where(Notification.event_id == event_id, _mine(N))
        ).first()
        if n is None:
            return None
        return View(n, _rows(s, n.id))


def _rows(s: Session, nid: str) -> list[OutboxRow]:
    return list(
        s.scalars(
            sa.select(OutboxRow)
            .where(OutboxRow.notification_id == nid, _mine(OB))
            .order_by(OutboxRow.id)
        )
    )


def get(engine: Engine, nid: str) -> View:
    """The notification `nid`, or NotFound naming it."""
    if not nid:
        raise InvalidArgument("id is required", field="id")
    with Session(engine, expire_on_commit=False) as s:
        n = s.scalars(sa.select(Notification).where(N.c.id == nid, _mine(N))).first()
        if n is None:
            raise NotFound(f"notification {nid[:64]!r} does not exist")
        return View(n, _rows(s, nid))


def list_page(engine: Engine, page_size: int, page_token: str = "", status: str = "") -> Page[View]:
    """Notifications newest first, one page (ferry.db.pages)."""
    where: list[sa.ColumnElement[bool]] = [_mine(N)]
    if status:
        where.append(N.c.status == status)
    with Session(engine, expire_on_commit=False) as s:
        page = newest_first(
            lambda q: list(s.scalars(q)),
            sa.select(Notification).where(*where),
            N.c.created_at,
            N.c.id,
            page_size,
            page_token,
            counter(s, N, where),
        )
        by_id = _deliveries_of(s, page.items)
    return Page([View(n, by_id[n.id]) for n in page.items], page.next_token, page.total)


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
    return claim_batch(engine, worker, channels, limit, lease_seconds)[0]


def claim_batch(
    engine: Engine,
    worker: str,
    channels: Sequence[str],
    limit: int,
    lease_seconds: float,
) -> tuple[list[Delivery], dict[str, str]]:
    """`claim`, and the switched-off channel keys (`disabled`) read in the same
    transaction when anything was claimed. On PostgreSQL one statement (`_PG_CLAIM`);
    a worker claims through a `Claimer`, which keeps one connection for a batch."""
    if not channels:
        return [], {}
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            return _pg_claim(conn, worker, channels, limit, lease_seconds)
    now = utcnow()
    school = tenant.school_id()
    claimable = sa.and_(
        OB.c.school_id == school,  # the application scope (row-level security the second)
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
        # SQLite: one statement, so the read and the write are one atomic step (a
        # separate SELECT would make the write fail on a stale WAL snapshot).
        where = OB.c.id.in_(pick.scalar_subquery())
        stmt = OB.update().where(where, claimable).values(**lease).returning(OB.c.id)
        ids = [r[0] for r in conn.execute(stmt)]
        if not ids:
            return [], {}
        off = {k: r for k, r in conn.execute(sa.select(C.c.key, C.c.reason).where(C.c.disabled))}
        sender = conn.execute(sa.select(SC.c.sender).where(SC.c.id == school)).scalar()
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
            .where(
                OB.c.id.in_(ids),
                OB.c.lease_owner == worker,
                OB.c.school_id == school,
                N.c.school_id == school,
            )
            .order_by(OB.c.id)
        ).all()
    return _deliveries(rows, sender), off


def _deliveries(rows: Sequence[Any], sender: Any) -> list[Delivery]:
    return [
        Delivery(
            row_id=r.id,
            notification_id=r.notification_id,
            event_id=public_event_id(r.event_id),
            channel=r.channel,
            recipient=r.recipient,
            attempt=r.attempts,
            subject=r.subject,
            text=r.text_body,
            html=r.html_body,
            template=r.template,
            language=r.language,
            variables=dict(r.variables or {}),
            sender=str(sender or ""),
        )
        for r in rows
    ]


# `claim_batch` on PostgreSQL as one statement (one round trip, prepared by psycopg after
# a few runs, no SQL built per claim): the due rows picked and locked (SKIP LOCKED, in a
# MATERIALIZED CTE so the pick runs once, never once per row), leased, and returned
# with their notification's content, the school's sender and the switched-off channel
# keys. In autocommit the statement is its own transaction, committed as before (the
# session's synchronous_commit: a lease survives a crash of PostgreSQL itself).
_PG_CLAIM = f"""
WITH picked AS MATERIALIZED (
  SELECT id FROM notify_outbox
  WHERE school_id = %(school)s AND status = '{PENDING}' AND next_attempt_at <= %(now)s
    AND channel = ANY(%(channels)s) AND (lease_until IS NULL OR lease_until < %(now)s)
  ORDER BY next_attempt_at, id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), leased AS (
  UPDATE notify_outbox o SET lease_owner = %(worker)s, lease_until = %(until)s,
         attempts = o.attempts + 1
  FROM picked WHERE o.id = picked.id AND o.status = '{PENDING}'
  RETURNING o.id, o.notification_id, o.channel, o.recipient, o.attempts
)
SELECT l.id, l.notification_id, l.channel, l.recipient, l.attempts, n.event_id, n.subject,
       n.text_body, n.html_body, n.template, n.language, n.variables,
       (SELECT s.sender FROM schools s WHERE s.id = %(school)s) AS sender,
       (SELECT json_object_agg(c.key, c.reason) FROM notify_channel_state c
        WHERE c.disabled) AS off
FROM leased l JOIN notifications n ON n.id = l.notification_id AND n.school_id = %(school)s
ORDER BY l.id
"""


def _pg_claim(
    conn: sa.Connection, worker: str, channels: Sequence[str], limit: int, lease_seconds: float
) -> tuple[list[Delivery], dict[str, str]]:
    """`_PG_CLAIM` on `conn` (AUTOCOMMIT, acting for the school whose rows it claims)."""
    now = utcnow()
    params = {
        "school": tenant.school_id(),
        "now": now,
        "until": now + dt.timedelta(seconds=lease_seconds),
        "channels": list(channels),
        "limit": limit,
        "worker": worker,
    }
    rows = _driver(conn).execute(_PG_CLAIM, params, prepare=True).fetchall()
    if not rows:
        return [], {}
    sender, off = str(rows[0][12] or ""), {str(k): str(v) for k, v in (rows[0][13] or {}).items()}
    return [
        Delivery(
            row_id=r[0],
            notification_id=r[1],
            event_id=public_event_id(r[5]),
            channel=r[2],
            recipient=r[3],
            attempt=r[4],
            subject=r[6],
            text=r[7],
            html=r[8],
            template=r[9],
            language=r[10],
            variables=dict(r[11] or {}),
            sender=sender,
        )
        for r in rows
    ], off


def _driver(conn: sa.Connection) -> Any:
    """The psycopg connection under `conn` (AUTOCOMMIT), acting for the current school:
    the statements of the notify workers' hot path go to it directly, prepared, without
    SQLAlchemy's per-statement work (a large part of a worker's CPU per mail, issue 27).
    Beginning `conn` once first runs ferry.db.engine's `begin` hook, which sets the
    school for the session (row-level security)."""
    if not conn.in_transaction():
        conn.begin()
    return conn.connection.driver_connection


class Claimer:
    """`claim_batch` for one worker's batch and its top-ups (ferry.notify.worker), on
    one connection held for the batch: on PostgreSQL one statement per claim in
    autocommit (`_PG_CLAIM`), instead of a pool checkout (with its pre-ping), BEGIN,
    the school's setting, five statements and COMMIT each time: the claim was the largest
    part of a notify worker's CPU per mail (py-spy, issue 27). The school is the one
    acting when the first claim runs (a batch is one school's, worker.run_once). On
    SQLite, `claim_batch` itself."""

    def __init__(self, engine: Engine, worker: str) -> None:
        self.engine = engine
        self.worker = worker
        self._conn: sa.Connection | None = None
        self._pg = engine.dialect.name == "postgresql"

    def claim(
        self, channels: Sequence[str], limit: int, lease_seconds: float
    ) -> tuple[list[Delivery], dict[str, str]]:
        if not self._pg or not channels:
            return claim_batch(self.engine, self.worker, channels, limit, lease_seconds)
        if self._conn is None:
            self._conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return _pg_claim(self._conn, self.worker, channels, limit, lease_seconds)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


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
                    OB.c.id.in_(list(row_ids)),
                    OB.c.lease_owner == worker,
                    OB.c.status == PENDING,
                    _mine(OB),
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


def _row_with(status: str) -> Any:
    o = OB.alias("o")
    return sa.exists().where(o.c.notification_id == N.c.id, o.c.status == status)


# A notification none of whose rows is pending any more takes the worst outcome of its
# rows (dead > failed > sent), in the transaction that settles its last row: a worker
# killed right after never leaves a delivered notification looking pending.
_SETTLED_NOTIFICATION = (
    N.update()
    .where(N.c.id == sa.bindparam("nid"), N.c.status == PENDING, ~_row_with(PENDING))
    .values(
        status=sa.case((_row_with(DEAD), DEAD), (_row_with(FAILED), FAILED), else_=SENT),
        updated_at=sa.bindparam("now"),
    )
)


# The same as a row update and _SETTLED_NOTIFICATION for every row of %(ids)s at once, in
# one statement (PostgreSQL sends it in one round trip). A data-modifying CTE's own change
# is not visible to the rest of the statement, so "the notification's other rows" are
# those not among the rows it settled (r); several rows of one notification settled
# together settle it once.
_PG_SETTLE_SENT = f"""
WITH r AS (
  UPDATE notify_outbox SET status = '{SENT}', sent_at = %(now)s, last_error = '',
         lease_owner = NULL, lease_until = NULL
  WHERE id = ANY(%(ids)s) AND lease_owner = %(worker)s
  RETURNING id, notification_id, created_at
), n AS (
  UPDATE notifications SET updated_at = %(now)s, status = CASE
      WHEN EXISTS (SELECT 1 FROM notify_outbox o WHERE o.notification_id = notifications.id
                   AND o.id NOT IN (SELECT id FROM r) AND o.status = '{DEAD}') THEN '{DEAD}'
      WHEN EXISTS (SELECT 1 FROM notify_outbox o WHERE o.notification_id = notifications.id
                   AND o.id NOT IN (SELECT id FROM r) AND o.status = '{FAILED}') THEN '{FAILED}'
      ELSE '{SENT}' END
  WHERE notifications.id IN (SELECT notification_id FROM r)
    AND notifications.status = '{PENDING}'
    AND NOT EXISTS (SELECT 1 FROM notify_outbox o WHERE o.notification_id = notifications.id
                    AND o.id NOT IN (SELECT id FROM r) AND o.status = '{PENDING}')
)
SELECT id, created_at FROM r
"""


class SentSettler:
    """Settles delivered rows as soon as their relay accepted them, so a worker killed at
    any moment leaves at most the rows in flight to be sent again (settling a whole batch
    at its end resent every mail of it). Each row's notification takes its final status in
    the same statement when no row of it is pending any more.

    Cheap by construction: one connection held for the batch; on PostgreSQL one statement
    in autocommit (one round trip) for all the rows accepted since the last call
    (`sent_many`: a worker hands it the sends that completed together, so under load, when
    more complete at once, it costs fewer statements per mail), committed without waiting
    for the WAL flush (synchronous_commit off for this connection while it settles): a lost
    settle costs one more copy of a mail under its same Message-ID only if PostgreSQL
    itself crashes within that fraction of a second, never when this process dies. On
    SQLite (a laptop) the updates share one transaction."""

    def __init__(self, engine: Engine, worker: str) -> None:
        self.engine = engine
        self.worker = worker
        self._conn: sa.Connection | None = None
        self._pg = engine.dialect.name == "postgresql"

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            if self._pg:
                conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("SET synchronous_commit TO OFF")
            else:
                conn = self.engine.connect()
            self._conn = conn
        return self._conn

    def sent(self, d: Delivery) -> Settled | None:
        """Mark `d`'s row sent now; None when the row is no longer this worker's."""
        done = self.sent_many([d])
        return done[0] if done else None

    def sent_many(self, ds: Sequence[Delivery]) -> list[Settled]:
        """Mark the rows of `ds` sent now, in one statement (one transaction on SQLite);
        those no longer this worker's are left alone and not in the answer."""
        if not ds:
            return []
        conn = self._connection()
        now = utcnow()
        by_id = {d.row_id: d for d in ds}
        if self._pg:
            params = {"ids": list(by_id), "worker": self.worker, "now": now}
            done = _driver(conn).execute(_PG_SETTLE_SENT, params, prepare=True).fetchall()
        else:
            done = conn.execute(
                OB.update()
                .where(OB.c.id.in_(list(by_id)), OB.c.lease_owner == self.worker)
                .values(status=SENT, sent_at=now, last_error="", lease_owner=None, lease_until=None)
                .returning(OB.c.id, OB.c.created_at)
            ).all()
            for nid in dict.fromkeys(by_id[row_id].notification_id for row_id, _ in done):
                conn.execute(_SETTLED_NOTIFICATION, {"nid": nid, "now": now})
            conn.commit()
        return [Settled(by_id[row_id], SENT, aware(created)) for row_id, created in done]

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._pg:
                conn.exec_driver_sql("RESET synchronous_commit")
        finally:
            conn.close()


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
                .where(OB.c.id.in_(list(sent)), OB.c.lease_owner == worker, _mine(OB))
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
            held = sa.and_(OB.c.id == d.row_id, OB.c.lease_owner == worker, _mine(OB))
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
        .where(OB.c.notification_id.in_(ids), _mine(OB))
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
            .where(N.c.id.in_(group), N.c.status != status, _mine(N))
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
            .where(OB.c.id.in_([r.id for r in again]), OB.c.status.in_([FAILED, DEAD]), _mine(OB))
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
                .where(OB.c.status == PENDING, _mine(OB))
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
