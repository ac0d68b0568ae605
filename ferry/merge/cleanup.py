"""Expired plans: removed with their files.

Every dry run's plan expires `imports.plan_expiry_minutes` after it was made (0: never;
`imports.plan.expires_at`). An expired plan can no longer be applied (FailedPrecondition
naming the expiry, ferry.merge.approval.check_apply) nor approved; `cleanup_plans` then
deletes its file of every record (plan_records, in the import storage) and its row (the
dry run's `imports` row; nothing else of a dry run is kept). It runs with the retention
cleanup (`ferry export cleanup`, CleanupExports, and the CronJob that calls it). An apply
naming a removed plan's digest is FailedPrecondition too ("no preview has plan digest
..., or its plan expired and the cleanup removed it").
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db.import_models import Import
from ferry.merge import store
from ferry.merge.planfile import plan_key

log = logging.getLogger("ferry.merge")
T: sa.Table = Import.__table__  # type: ignore[assignment]


class PlanFiles(Protocol):
    """What the cleanup needs of the storage plugin plans are written to."""

    def size(self, key: str) -> int | None: ...

    def delete(self, key: str) -> int: ...


@dataclass(frozen=True)
class PlanCleanup:
    plans_removed: int = 0
    files_deleted: int = 0
    bytes_freed: int = 0


def expired_plans(engine: Engine, now: dt.datetime | None = None) -> list[tuple[str, bool]]:
    """(id, has a file of every record) of the acting school's dry runs whose plan has
    expired (the application scope: a school's cleanup removes its own plans only)."""
    now = now or dt.datetime.now(dt.UTC)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(T.c.id, T.c.plan).where(
                store.mine(), T.c.status == "dry_run", T.c.plan.is_not(None)
            )
        ).all()
    found = []
    for import_id, plan in rows:
        until = store.expiry(plan)
        if until is not None and until <= now:
            found.append((import_id, bool((plan or {}).get("records", False))))
    return found


def cleanup_plans(
    engine: Engine,
    storage: PlanFiles,
    now: dt.datetime | None = None,
    dry_run: bool = False,
    key_of: Callable[[str], str] = plan_key,
) -> PlanCleanup:
    """Remove every expired plan: its file of every record first, then its row (a row
    whose file could not be deleted stays, and the next cleanup tries again).
    `dry_run` counts what would go and changes nothing."""
    removed = deleted = freed = 0
    for import_id, has_file in expired_plans(engine, now):
        key = key_of(import_id)
        size = storage.size(key) if has_file else None
        if size is not None:
            deleted += 1
            freed += size
        if dry_run:
            removed += 1
            continue
        if size is not None:
            storage.delete(key)
        with engine.begin() as conn:
            removed += conn.execute(
                T.delete().where(store.mine(), T.c.id == import_id, T.c.status == "dry_run")
            ).rowcount
    result = PlanCleanup(removed, deleted, freed)
    log.info(
        "plan cleanup: %s",
        result,
        extra={"event": "plan_cleanup", "dry_run": dry_run},
    )
    return result
