"""Import records: the `imports` row of a run and its outcome, and reading them back."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.db import tenant
from ferry.db.import_models import Import
from ferry.db.models import aware
from ferry.db.pages import Page, newest_first
from ferry.errors import NotFound
from ferry.merge.model import (
    EntitySummary,
    ImportOutcome,
    ImportWarning,
    LimitCheck,
    MergeOptions,
    OnError,
    RecordChange,
    RecordError,
    Status,
    Strategy,
)

T = cast(sa.Table, Import.__table__)
SERVER_SETTINGS = {
    "change_limits",
    "conflicts",
    "approval_required",
    "approver",
    "plan_expiry_minutes",
}


def row_values(o: ImportOutcome, claim_key: bool) -> dict[str, Any]:
    """The `imports` columns of an outcome. `claim_key`: store the idempotency key (only
    runs that commit claim it)."""
    return {
        "id": o.id,
        "status": str(o.status),
        "dataset": o.options.dataset,
        "options": {
            k: str(v) if not isinstance(v, bool | None) else v
            for k, v in dataclasses.asdict(o.options).items()
            # (the server's settings, reported in `plan`, are not the caller's options)
            if k not in SERVER_SETTINGS
        },
        "entity": o.entity,
        "requested_by": o.requested_by,
        "source_sha256": o.source_sha256,
        "idempotency_key": (o.options.idempotency_key or None) if claim_key else None,
        "semester": o.semester,
        "summaries": [dataclasses.asdict(s) for s in o.summaries],
        "errors": [dataclasses.asdict(e) for e in o.errors],
        "sample_changes": [
            {
                "entity": c.entity,
                "natural_key": c.natural_key,
                "action": c.action,
                "changes": [list(x) for x in c.changes],
            }
            for c in o.sample_changes
        ],
        "total_errors": o.total_errors,
        "has_rejected": o.has_rejected_file,
        "created_at": o.created_at,
        "finished_at": o.finished_at,
        "undone_at": o.undone_at,
        "duration_seconds": o.duration_seconds,
        "error_message": o.error_message,
        "error_reason": o.error_reason,
        "error_metadata": o.error_details or None,
        "warnings": [dataclasses.asdict(w) for w in o.warnings],
        "backup_key": o.backup_key,
        "plan_digest": o.plan_digest or None,
        "plan": {
            "parts": o.plan_parts,
            "limits": [dataclasses.asdict(c) for c in o.limits],
            **({"approval": o.approval} if o.approval else {}),
            **({"records": True} if o.plan_records else {}),
            **({"expires_at": o.plan_expires_at.isoformat()} if o.plan_expires_at else {}),
        }
        if o.plan_digest or o.limits
        else None,
    }


def insert(conn: Connection, o: ImportOutcome, claim_key: bool) -> None:
    conn.execute(T.insert().values(**row_values(o, claim_key)))


def update(conn: Connection, o: ImportOutcome, claim_key: bool) -> None:
    values = row_values(o, claim_key)
    del values["id"]
    conn.execute(T.update().where(mine(), T.c.id == o.id).values(**values))


def from_row(row: Any) -> ImportOutcome:
    """An outcome from an `imports` row."""
    opts = dict(row.options or {})
    options = MergeOptions(
        strategy=Strategy(opts.get("strategy", "update")),
        dry_run=bool(opts.get("dry_run", False)),
        on_error=OnError(opts.get("on_error", "abort")),
        idempotency_key=str(opts.get("idempotency_key", "")),
        filename=str(opts.get("filename", "")),
        bundle_format=str(opts.get("bundle_format", "")),
        dataset=str(opts.get("dataset", row.dataset)),
        backup_before=opts.get("backup_before"),
        plan_digest=str(opts.get("plan_digest", "")),
        allow_mass_change=bool(opts.get("allow_mass_change", False)),
        plan_records=bool(opts.get("plan_records", False)),
    )
    plan = dict(getattr(row, "plan", None) or {})
    return ImportOutcome(
        id=row.id,
        status=Status(row.status),
        options=options,
        entity=row.entity,
        requested_by=row.requested_by,
        source_sha256=row.source_sha256,
        semester=row.semester,
        summaries=[EntitySummary(**s) for s in row.summaries or []],
        total_errors=int(row.total_errors),
        errors=[RecordError(**e) for e in row.errors or []],
        sample_changes=[
            RecordChange(
                c["entity"], c["natural_key"], c["action"], [(a, b, d) for a, b, d in c["changes"]]
            )
            for c in row.sample_changes or []
        ],
        has_rejected_file=bool(row.has_rejected),
        created_at=aware(row.created_at) or dt.datetime.now(dt.UTC),
        finished_at=aware(row.finished_at),
        undone_at=aware(row.undone_at),
        duration_seconds=float(row.duration_seconds),
        error_message=row.error_message,
        error_reason=getattr(row, "error_reason", "") or "",
        error_details=dict(getattr(row, "error_metadata", None) or {}),
        warnings=[ImportWarning(**w) for w in row.warnings or []],
        backup_key=row.backup_key or "",
        plan_digest=getattr(row, "plan_digest", None) or "",
        plan_parts=dict(plan.get("parts", {})),
        limits=[LimitCheck(**c) for c in plan.get("limits", [])],
        approval=dict(plan.get("approval") or {}),
        plan_records=bool(plan.get("records", False)),
        plan_expires_at=expiry(plan),
    )


def mine() -> sa.ColumnElement[bool]:
    """The application scope (the first wall): the acting school's imports only."""
    return T.c.school_id == tenant.school_id()


def expiry(plan: dict[str, Any] | None) -> dt.datetime | None:
    """When the plan recorded in an `imports.plan` expires (None: never): the earlier of
    its own expiry and its approval's (a plan made before every plan expired has only
    the approval's)."""
    plan = plan or {}
    texts = [plan.get("expires_at"), (plan.get("approval") or {}).get("expires_at")]
    found = [dt.datetime.fromisoformat(t) for t in texts if t]
    return min(found) if found else None


def load(conn: Connection, import_id: str) -> ImportOutcome | None:
    row = conn.execute(sa.select(T).where(mine(), T.c.id == import_id)).first()
    return None if row is None else from_row(row)


def by_key(conn: Connection, key: str) -> ImportOutcome | None:
    row = conn.execute(sa.select(T).where(mine(), T.c.idempotency_key == key)).first()
    return None if row is None else from_row(row)


def get_import(engine: Engine, import_id: str) -> ImportOutcome:
    """The recorded outcome of import `import_id`; NotFound when there is none."""
    with engine.connect() as conn:
        found = load(conn, import_id)
    if found is None:
        raise NotFound(f"import {import_id!r} does not exist", field="import_id")
    return found


def list_imports(engine: Engine, page_size: int, page_token: str) -> Page[ImportOutcome]:
    """Imports newest first, one page (ferry.db.pages)."""
    with engine.connect() as conn:
        page = newest_first(
            lambda q: conn.execute(q).all(), sa.select(T).where(mine()), T.c.created_at, T.c.id,
            page_size,
            page_token,
        )  # fmt: skip
    return Page([from_row(r) for r in page.items], page.next_token)
