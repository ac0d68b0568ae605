"""The export job table as a queue: create (idempotently), claim, heartbeat, progress,
finish, cancel and reap. Every state change is a conditional UPDATE, so several replicas
sharing one database never run a job twice and never overwrite each other's outcome.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from ferry.db import tenant
from ferry.db.export_models import (
    CANCELLED,
    FAILED,
    PENDING,
    RUNNING,
    TERMINAL,
    ExportJob,
)
from ferry.db.models import aware as aware
from ferry.db.models import utcnow
from ferry.db.pages import Page, counter, newest_first
from ferry.errors import FailedPrecondition, InvalidArgument, NotFound

T: sa.Table = ExportJob.__table__  # type: ignore[assignment]
log = logging.getLogger("ferry.export")


@dataclass(frozen=True)
class NewJob:
    """A validated StartExport request."""

    export_type: str
    format: str
    dataset: str
    filters: Mapping[str, str] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)
    limit: int = 0
    include_deleted: bool = False
    notify: list[str] = field(default_factory=list)
    idempotency_key: str = ""
    requested_by: str = ""
    filename: str = ""
    extension: str = ""
    language: str = ""


def create_job(engine: Engine, new: NewJob) -> tuple[ExportJob, bool]:
    """(job, created): the new pending job, or the earlier job with the same key."""
    key = new.idempotency_key or None
    if key is not None:
        existing = _by_key(engine, key)
        if existing is not None:
            return existing, False
    job_id = str(uuid.uuid4())
    row = ExportJob(
        id=job_id,
        export_type=new.export_type,
        format=new.format,
        dataset=new.dataset,
        filters={k: v for k, v in new.filters.items() if v},
        fields=list(new.fields),
        row_limit=new.limit,
        include_deleted=new.include_deleted,
        language=new.language,
        notify=list(new.notify),
        idempotency_key=key,
        status=PENDING,
        requested_by=new.requested_by,
        filename=new.filename,
        storage_key=storage_key(engine, job_id, new.extension),
        created_at=utcnow(),
    )
    try:
        with Session(engine, expire_on_commit=False) as s, s.begin():
            s.add(row)
    except sa_exc.IntegrityError:
        # A concurrent start with the same key won the unique constraint: return its job.
        if key is None:
            raise
        existing = _by_key(engine, key)
        if existing is None:
            raise
        return existing, False
    return row, True


def mine() -> sa.ColumnElement[bool]:
    """The application scope (the first wall): the acting school's jobs only."""
    return T.c.school_id == tenant.school_id()


def storage_key(engine: Engine, job_id: str, extension: str) -> str:
    """Where the job's file goes: under its school's code (`<code>--<id>.<extension>`),
    so a school's files are found, listed and moved by one prefix."""
    with engine.connect() as conn:
        code = conn.execute(
            sa.text("SELECT code FROM schools WHERE id = :s"), {"s": tenant.school_id()}
        ).scalar_one()
    name = f"{job_id}.{extension}" if extension else job_id
    return f"{code}--{name}"


def _by_key(engine: Engine, key: str) -> ExportJob | None:
    with Session(engine, expire_on_commit=False) as s:
        return s.scalars(
            sa.select(ExportJob).where(mine(), ExportJob.idempotency_key == key)
        ).first()


def get_job(engine: Engine, job_id: str) -> ExportJob:
    """The job, or NotFound naming it."""
    if not job_id:
        raise InvalidArgument("job_id is required", field="job_id")
    with Session(engine, expire_on_commit=False) as s:
        job = s.scalars(sa.select(ExportJob).where(mine(), ExportJob.id == job_id)).first()
    if job is None:
        raise NotFound(f"export job {job_id!r} does not exist")
    return job


def list_jobs(
    engine: Engine,
    page_size: int,
    page_token: str = "",
    status: str = "",
    export_type: str = "",
    requested_by: str = "",
) -> Page[ExportJob]:
    """Jobs newest first, one page (ferry.db.pages)."""
    where: list[sa.ColumnElement[bool]] = [mine()]
    if status:
        where.append(T.c.status == status)
    if export_type:
        where.append(T.c.export_type == export_type)
    if requested_by:
        where.append(T.c.requested_by == requested_by)
    with Session(engine, expire_on_commit=False) as s:
        return newest_first(
            lambda q: list(s.scalars(q)),
            sa.select(ExportJob).where(*where),
            T.c.created_at,
            T.c.id,
            page_size,
            page_token,
            counter(s, T, where),
        )


def request_cancel(engine: Engine, job_id: str) -> ExportJob:
    """Cancel a pending job at once, or flag a running one (its worker stops at the next
    progress tick). FailedPrecondition when the job has already ended."""
    job = get_job(engine, job_id)
    if job.status == CANCELLED:
        return job  # cancelling twice is not an error (the RPC is idempotent)
    if job.status in TERMINAL:
        raise FailedPrecondition(f"export job {job_id} has already ended ({job.status})")
    now = utcnow()
    with engine.begin() as conn:
        done = conn.execute(
            T.update()
            .where(mine(), T.c.id == job_id, T.c.status == PENDING)
            .values(status=CANCELLED, cancel_requested=True, finished_at=now)
        ).rowcount
        if not done:
            conn.execute(
                T.update()
                .where(mine(), T.c.id == job_id, T.c.status == RUNNING)
                .values(cancel_requested=True)
            )
    # A running job may have finished in the meantime; the caller sees how it ended.
    return get_job(engine, job_id)


def claim_next(engine: Engine, worker_id: str) -> ExportJob | None:
    """Take the oldest pending job for `worker_id`, or None. Safe across processes:
    PostgreSQL skips rows another claimer holds; elsewhere the UPDATE's status check
    lets exactly one claimer win."""
    now = utcnow()
    claim = dict(status=RUNNING, worker_id=worker_id, started_at=now, heartbeat_at=now)
    pending = (
        sa.select(T.c.id)
        .where(mine(), T.c.status == PENDING)
        .order_by(T.c.created_at, T.c.id)
        .limit(1)
    )
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            job_id = conn.execute(pending.with_for_update(skip_locked=True)).scalar()
            if job_id is None:
                return None
            conn.execute(T.update().where(mine(), T.c.id == job_id).values(**claim))
        return get_job(engine, job_id)
    for _ in range(5):  # lost races retry with the next pending job
        with engine.begin() as conn:
            job_id = conn.execute(pending).scalar()
            if job_id is None:
                return None
            won = conn.execute(
                T.update().where(mine(), T.c.id == job_id, T.c.status == PENDING).values(**claim)
            ).rowcount
        if won == 1:
            return get_job(engine, job_id)
    return None


def heartbeat(engine: Engine, job_ids: list[str]) -> None:
    """Mark these running jobs alive now."""
    if not job_ids:
        return
    with engine.begin() as conn:
        conn.execute(
            T.update()
            .where(mine(), T.c.id.in_(job_ids), T.c.status == RUNNING)
            .values(heartbeat_at=utcnow())
        )


def save_progress(engine: Engine, job_id: str, worker_id: str, **values: Any) -> bool:
    """Record progress (and a heartbeat); True when someone asked to cancel the job."""
    with engine.begin() as conn:
        conn.execute(
            T.update()
            .where(mine(), T.c.id == job_id, T.c.worker_id == worker_id, T.c.status == RUNNING)
            .values(heartbeat_at=utcnow(), **values)
        )
        flag = conn.execute(
            sa.select(T.c.cancel_requested).where(mine(), T.c.id == job_id)
        ).scalar()
    return bool(flag)


# Writes a job's announcement in the transaction that ends it (ferry.export_jobs.announce):
# called with that connection and the job as it ends; returns the notification id.
Announce = Callable[[Connection, ExportJob], str]


def finish(
    engine: Engine,
    job_id: str,
    worker_id: str,
    status: str,
    announce: Announce | None = None,
    **values: Any,
) -> bool:
    """End a running job as `status`, its announcement (when `announce` is given) written in
    the same transaction; False when it was no longer ours (the reaper failed it
    meanwhile), in which case the caller must discard its file."""
    with engine.begin() as conn:
        won = (
            conn.execute(
                T.update()
                .where(mine(), T.c.id == job_id, T.c.worker_id == worker_id, T.c.status == RUNNING)
                .values(status=status, finished_at=utcnow(), **values)
            ).rowcount
            == 1
        )
        if won and announce is not None:
            _announce(conn, job_id, announce)
        return won


def _announce(conn: Connection, job_id: str, announce: Announce) -> None:
    """Write the job's announcement and record its id, in `conn`'s transaction, inside a
    SAVEPOINT: an announcement that cannot be written is logged, never the job's end."""
    try:
        with conn.begin_nested():
            with Session(bind=conn, expire_on_commit=False) as s:
                job = s.get(ExportJob, job_id)
                assert job is not None  # the UPDATE that ended it just matched it
                s.expunge(job)
            nid = announce(conn, job)
            if nid:
                conn.execute(
                    T.update()
                    .where(mine(), T.c.id == job_id, T.c.notification_id == "")
                    .values(notification_id=nid)
                )
    except Exception:
        log.exception(
            "export job %s: its announcement could not be written",
            job_id,
            extra={"event": "export_announce_failed", "job_id": job_id},
        )


def requeue(engine: Engine, job_id: str, worker_id: str) -> bool:
    """Give a running job back to the queue (this worker is shutting down)."""
    with engine.begin() as conn:
        return (
            conn.execute(
                T.update()
                .where(mine(), T.c.id == job_id, T.c.worker_id == worker_id, T.c.status == RUNNING)
                .values(
                    status=PENDING,
                    worker_id="",
                    started_at=None,
                    heartbeat_at=None,
                    progress_percent=0,
                    processed_records=0,
                )
            ).rowcount
            == 1
        )


REAPED_MESSAGE = "worker stopped responding"


def reap(
    engine: Engine,
    timeout_seconds: float,
    announce: Callable[[ExportJob], Announce | None] | None = None,
) -> list[ExportJob]:
    """Fail running jobs whose heartbeat is older than the timeout, each one's
    announcement (`announce(job)`, when given) written in the transaction that fails it;
    the jobs reaped."""
    cutoff = utcnow() - dt.timedelta(seconds=timeout_seconds)
    with engine.connect() as conn:
        stale = list(
            conn.execute(
                sa.select(T.c.id).where(mine(), T.c.status == RUNNING, T.c.heartbeat_at < cutoff)
            ).scalars()
        )
    reaped: list[ExportJob] = []
    for job_id in stale:
        # Made before the transaction, from the job as it was (it needs no link: a failure).
        write = announce(get_job(engine, job_id)) if announce is not None else None
        with engine.begin() as conn:
            won = conn.execute(
                T.update()
                .where(mine(), T.c.id == job_id, T.c.status == RUNNING, T.c.heartbeat_at < cutoff)
                .values(
                    status=FAILED,
                    error_message=REAPED_MESSAGE,
                    error_reason="WORKER_LOST",
                    finished_at=utcnow(),
                )
            ).rowcount
            if won and write is not None:
                _announce(conn, job_id, write)
        if won:
            reaped.append(get_job(engine, job_id))
    return reaped
