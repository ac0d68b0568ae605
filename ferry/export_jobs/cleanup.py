"""Retention: delete (or archive) the files of old export jobs and their rows.

`cleanup` works for the acting school (CleanupExports: the caller's); `cleanup_every_school`
is the platform's retention (`ferry export cleanup --all-schools`, the CronJob), going
school by school, each acting for its school (docs/tenants.md)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db import schools, tenant
from ferry.db.export_models import TERMINAL, ExportJob
from ferry.db.models import utcnow
from ferry.errors import InvalidArgument
from ferry.storage import Storage

log = logging.getLogger("ferry.export")
T: sa.Table = ExportJob.__table__  # type: ignore[assignment]
# Temp files older than this belong to a process that died mid-export.
STALE_TEMP_SECONDS = 24 * 3600


@dataclass(frozen=True)
class CleanupResult:
    jobs_removed: int = 0
    files_deleted: int = 0
    files_archived: int = 0
    # Bytes that left the export storage (archived files count: they moved elsewhere).
    bytes_freed: int = 0


MAX_DAYS = 365_000  # a thousand years: every job ever made, and a cutoff that fits a date


def cleanup(
    engine: Engine,
    storage: Storage,
    older_than_days: int,
    retention_days: int,
    archive: bool = False,
    dry_run: bool = False,
    sweep: bool = True,
) -> CleanupResult:
    """Remove jobs that ended more than `older_than_days` (0: `retention_days`) ago with
    their files; with `archive` the files move to the archive; `dry_run` changes nothing."""
    if not 0 <= older_than_days <= MAX_DAYS:  # past that the cutoff date overflows
        raise InvalidArgument(
            f"older_than_days must be 0 to {MAX_DAYS:,}, got {older_than_days}",
            field="older_than_days",
        )
    cutoff = utcnow() - dt.timedelta(days=older_than_days or retention_days)
    mine = T.c.school_id == tenant.school_id()  # the application scope (the first wall)
    with engine.connect() as conn:
        old = conn.execute(
            sa.select(T.c.id, T.c.storage_key).where(
                T.c.status.in_(TERMINAL), T.c.finished_at < cutoff, mine
            )
        ).all()
    deleted = archived = freed = removed = 0
    for job_id, key in old:
        size = storage.size(key) if key else None
        if size is not None:
            freed += size
            if archive:
                archived += 1
            else:
                deleted += 1
        if dry_run:
            removed += 1
            continue
        if size is not None:
            (storage.archive if archive else storage.delete)(key)
        with engine.begin() as conn:
            removed += conn.execute(T.delete().where(T.c.id == job_id, mine)).rowcount
    if not dry_run and sweep:
        storage.sweep_temp(STALE_TEMP_SECONDS)
    result = CleanupResult(removed, deleted, archived, freed)
    log.info(
        "export cleanup: %s",
        result,
        extra={"event": "export_cleanup", "dry_run": dry_run, "cutoff": cutoff.isoformat()},
    )
    return result


def cleanup_every_school(
    engine: Engine,
    storage: Storage,
    retention_days: int,
    archive: bool = False,
    dry_run: bool = False,
) -> dict[str, CleanupResult]:
    """The platform's retention: `cleanup` of every school, each acting for its school
    (its own rows and files only), with the configured retention; per school code. The
    temp files of dead processes are swept once, at the end."""
    out: dict[str, CleanupResult] = {}
    for school in schools.all_schools(engine):
        with tenant.acting_for(school.id):
            out[school.code] = cleanup(
                engine, storage, 0, retention_days, archive, dry_run, sweep=False
            )
    if not dry_run:
        storage.sweep_temp(STALE_TEMP_SECONDS)
    return out
