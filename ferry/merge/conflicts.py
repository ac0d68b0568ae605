"""Conflicts left for a person: fields changed both here and at the source whose policy
(`imports.conflicts`) is `review`.

A three-way import (ferry.merge.threeway) keeps the local value of such a field and lists
the conflict in `import_conflicts` with both values. `list_conflicts` reads the open ones;
`resolve_conflicts` applies a person's choices, per conflict `local` (the value here
stays) or `source` (the source's value is written), as an import of its own: one
transaction under the dataset's import lock, recorded in `imports` (who, when, what),
with the old rows saved in `import_changes`, so UndoImport takes it back like any import
and the conflicts it resolved are open again. Each conflict is decided once: an unknown id
is NotFound, a resolved one FailedPrecondition, and one whose local value changed since
it was listed FailedPrecondition too (list again), each naming the id; nothing is written
then.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle import semesters
from ferry.datasets.spec import Dataset, Field, Kind
from ferry.db import tenant
from ferry.db.models import aware
from ferry.errors import FailedPrecondition, InvalidArgument, NotFound
from ferry.merge import apply, store, threeway
from ferry.merge.model import (
    EntitySummary,
    ImportOutcome,
    MergeOptions,
    RecordChange,
    Status,
    Strategy,
)
from ferry.merge.run import begin_locked
from ferry.merge.shape import q
from ferry.reports import versions
from ferry.reports.versions import bump_and_touched

log = logging.getLogger(__name__)

C = threeway.C
CHOICES = ("local", "source")
MAX_PAGE = 500
DEFAULT_PAGE = 100
# At most this many conflicts are decided in one call (one import).
MAX_DECISIONS = 5000


@dataclass
class Conflict:
    id: int
    import_id: str
    entity: str
    natural_key: str
    field: str
    local_value: Any
    source_value: Any
    created_at: dt.datetime


@dataclass
class ConflictPage:
    items: list[Conflict]
    next_token: str
    total: int  # open conflicts (of the entity asked for) on every page together


def _mine() -> sa.ColumnElement[bool]:
    """The application scope (the first wall): the acting school's conflicts only, so
    another school's conflict id is unknown here whatever role runs the query."""
    return C.c.school_id == tenant.school_id()


def _conflict(row: Any) -> Conflict:
    created = aware(row.created_at)
    assert created is not None
    return Conflict(
        int(row.id),
        row.import_id,
        row.entity,
        row.natural_key,
        row.field,
        (row.local_value or {}).get("v"),
        (row.source_value or {}).get("v"),
        created,
    )


def as_text(value: Any) -> str:
    """A conflict's value as a person reads it ("" for none)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    return str(value)


def list_conflicts(
    engine: Engine, ds: Dataset, entity: str = "", page_size: int = 0, page_token: str = ""
) -> ConflictPage:
    """The open conflicts, oldest first (by id), a page at a time."""
    if entity and entity not in ds.entities:
        raise InvalidArgument(
            f"unknown entity {entity!r}; known: {', '.join(ds.entities)}", field="entity"
        )
    if not 0 <= page_size <= MAX_PAGE:
        raise InvalidArgument(
            f"page_size must be 0 to {MAX_PAGE} (0 means {DEFAULT_PAGE}), got {page_size}",
            field="page_size",
        )
    size = page_size or DEFAULT_PAGE
    after = 0
    if page_token:
        if not page_token.isdigit() or len(page_token) > 18:
            raise InvalidArgument(
                "page_token is not one this service handed out", field="page_token"
            )
        after = int(page_token)
    where: list[sa.ColumnElement[bool]] = [_mine(), C.c.resolution.is_(None)]
    if entity:
        where.append(C.c.entity == entity)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(C).where(*where, C.c.id > after).order_by(C.c.id).limit(size + 1)
        ).all()
        total = conn.execute(sa.select(sa.func.count()).select_from(C).where(*where)).scalar_one()
    items = [_conflict(r) for r in rows[:size]]
    return ConflictPage(items, str(items[-1].id) if len(rows) > size else "", int(total))


def _field(ds: Dataset, entity: str, name: str) -> Field:
    return next(f for f in ds.entity(entity).fields if f.name == name)


def _typed(value: Any, kind: Kind) -> Any:
    """A conflict's JSON value as the column takes it."""
    if value is None:
        return None
    if kind is Kind.DATE:
        return dt.date.fromisoformat(str(value)[:10])
    if kind is Kind.TIMESTAMP:
        stamp = dt.datetime.fromisoformat(str(value))
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)
    if kind is Kind.FLOAT:
        return float(value)
    if kind is Kind.INT:
        return int(value)
    return value


def _same(a: Any, b: Any, kind: Kind) -> bool:
    if a is None or b is None:
        return a is b
    if kind in (Kind.DATE, Kind.TIMESTAMP):
        return bool(_typed(a, kind) == _typed(b, kind))
    return bool(a == b)


def _decisions(decisions: list[tuple[int, str]]) -> dict[int, str]:
    if not decisions:
        raise InvalidArgument("name at least one conflict to resolve", field="decisions")
    if len(decisions) > MAX_DECISIONS:
        raise InvalidArgument(
            f"at most {MAX_DECISIONS} conflicts can be resolved at once, got {len(decisions)}",
            field="decisions",
        )
    chosen: dict[int, str] = {}
    for i, (cid, choice) in enumerate(decisions):
        if cid <= 0:
            raise InvalidArgument(
                f"conflict_id must be a conflict's id, got {cid}",
                field=f"decisions[{i}].conflict_id",
            )
        if choice not in CHOICES:
            raise InvalidArgument(
                f"choose local or source for conflict {cid}", field=f"decisions[{i}].choice"
            )
        if cid in chosen:
            raise InvalidArgument(
                f"conflict {cid} is named twice", field=f"decisions[{i}].conflict_id"
            )
        chosen[cid] = choice
    return chosen


def resolve_conflicts(
    engine: Engine,
    ds: Dataset,
    decisions: list[tuple[int, str]],
    *,
    requested_by: str,
) -> ImportOutcome:
    """Apply `decisions` ((conflict id, local | source), see the module doc) as one
    recorded, undoable import; returns its outcome."""
    chosen = _decisions(decisions)
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    ids = sorted(chosen)
    shown = ", ".join(f"#{i}" for i in ids[:20]) + (", …" if len(ids) > 20 else "")
    options = MergeOptions(
        strategy=Strategy.UPDATE_ONLY, dataset=ds.name, filename=f"conflicts {shown}"[:200]
    )
    outcome = ImportOutcome(
        id=str(uuid.uuid4()),
        status=Status.COMPLETED,
        options=options,
        entity="",
        requested_by=requested_by,
        source_sha256=hashlib.sha256(json.dumps(sorted(chosen.items())).encode()).hexdigest(),
        semester="",
        summaries=[],
        total_errors=0,
        errors=[],
        sample_changes=[],
        has_rejected_file=False,
        created_at=started,
        finished_at=None,
        undone_at=None,
        duration_seconds=0.0,
        error_message="",
    )
    with engine.connect() as conn:
        begin_locked(conn, ds.name)
        found = conn.execute(sa.select(C).where(_mine(), C.c.id.in_(ids))).all()
        rows = {int(r.id): r for r in found}
        for cid in ids:
            row = rows.get(cid)
            if row is None:
                raise NotFound(
                    f"conflict {cid} does not exist",
                    field="decisions.conflict_id",
                    reason="CONFLICT_NOT_FOUND",
                    metadata={"id": str(cid)},
                )
            if row.resolution is not None:
                by = f" by {row.resolved_by}" if row.resolved_by else ""
                raise FailedPrecondition(
                    f"conflict {cid} was resolved already ({row.resolution}{by})",
                    field="decisions.conflict_id",
                    reason="CONFLICT_RESOLVED",
                    metadata={"id": str(cid)},
                )
        store.insert(conn, outcome, claim_key=False)  # its changes name it
        now = apply.ts_param(started, sqlite)
        summaries: dict[str, EntitySummary] = {}
        written: dict[str, set[int]] = {}
        kept: dict[str, set[int]] = {}
        by_row: dict[tuple[str, int], list[Any]] = {}
        for cid in ids:
            row = rows[cid]
            by_row.setdefault((row.entity, int(row.row_id)), []).append(row)
        school = tenant.school_id()
        for (name, row_id), listed in by_row.items():
            entity = ds.entity(name)
            table = entity.table
            current = conn.execute(
                sa.select(table).where(table.c.id == row_id, table.c.school_id == school)
            ).first()
            changes: list[tuple[str, Any]] = []
            for row in listed:
                spec = _field(ds, name, row.field)
                local = (row.local_value or {}).get("v")
                if current is None or not _same(
                    threeway.json_value(getattr(current, spec.column_name), spec.kind),
                    local,
                    spec.kind,
                ):
                    raise FailedPrecondition(
                        f"conflict {row.id}: {name} {row.natural_key} {row.field} changed "
                        "here since the conflict was listed; list the conflicts again",
                        field="decisions.conflict_id",
                        reason="CONFLICT_CHANGED",
                        metadata={"id": str(row.id)},
                    )
                source = (row.source_value or {}).get("v")
                choice = chosen[int(row.id)]
                outcome.sample_changes.append(
                    RecordChange(
                        name,
                        row.natural_key,
                        "update" if choice == "source" else "keep_local",
                        [(row.field, as_text(local), as_text(source))],
                    )
                )
                if choice == "source" and not _same(local, source, spec.kind):
                    changes.append((spec.column_name, _typed(source, spec.kind)))
            if changes:
                _write(conn, ds, name, row_id, changes, outcome.id, now, sqlite)
                written.setdefault(name, set()).add(row_id)
            else:
                kept.setdefault(name, set()).add(row_id)
        for name in {n for n, _ in by_row}:
            summaries[name] = EntitySummary(
                name,
                updated=len(written.get(name, ())),
                unchanged=len(kept.get(name, set()) - written.get(name, set())),
            )
        for cid in ids:
            conn.execute(
                C.update()
                .where(_mine(), C.c.id == cid)
                .values(
                    resolution=chosen[cid],
                    resolved_by=requested_by,
                    resolved_at=started,
                    resolved_import_id=outcome.id,
                )
            )
        outcome.summaries = [summaries[e.name] for e in ds.in_order() if e.name in summaries]
        outcome.finished_at = dt.datetime.now(dt.UTC)
        outcome.duration_seconds = time.perf_counter() - clock
        store.update(conn, outcome, claim_key=False)
        if written:
            _, touched = bump_and_touched(conn, ds, outcome.id, created=False)
            semesters.recount(conn, ds, touched)
        threeway.importing(conn, False)
        conn.commit()
        was_changed = versions.changed(conn)
    versions.settle(engine, was_changed)  # no replica serves what it changed, from now
    log.info(
        "conflicts %s resolved by %s as import %s",
        ", ".join(f"{i}:{chosen[i]}" for i in ids[:50]),
        requested_by or "?",
        outcome.id,
    )
    return outcome


def _write(
    conn: Any,
    ds: Dataset,
    name: str,
    row_id: int,
    changes: list[tuple[str, Any]],
    import_id: str,
    now: Any,
    sqlite: bool,
) -> None:
    """Save the row for undo, then write the source's values of the chosen fields."""
    entity = ds.entity(name)
    table = q(entity.table.name)
    conn.execute(
        sa.text(
            "INSERT INTO import_changes (import_id, entity, action, row_id, old_values, "
            f"new_updated_at) SELECT :iid, :entity, 'updated', t.id, "
            f"{apply.old_row_json(entity, 't', sqlite)}, :now FROM {table} t WHERE t.id = :id "
            f"AND {tenant.scope_sql('t')}"
        ),
        {"iid": import_id, "entity": name, "now": now, "id": row_id},
    )
    sets = ", ".join(f"{q(col)} = :v{i}" for i, (col, _) in enumerate(changes))
    statement = sa.text(
        f"UPDATE {table} SET {sets}, updated_at = :now WHERE id = :id AND {tenant.scope_sql(table)}"
    )
    params: dict[str, Any] = {"now": now, "id": row_id}
    for i, (col, value) in enumerate(changes):
        statement = statement.bindparams(sa.bindparam(f"v{i}", type_=entity.table.c[col].type))
        params[f"v{i}"] = value
    conn.execute(statement, params)
