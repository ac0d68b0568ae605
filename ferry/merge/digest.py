"""Plan digests: a dry run's plan made binding.

A run's plan is, per entity, what it decides for each staged record (its position, its
status: create, update, same, skip, unmatched, error, and the existing row it matches)
and the data version (`updated_at`) of each existing row it reads; for a replace also
the versions of the live rows of the scope it may soft-delete. Each entity's part is
fingerprinted in SQL right after it is resolved, before anything of it is applied: on
PostgreSQL a count and a sum of 64-bit hashes (`hashtextextended`, one aggregate over
the status table, which carries the version of each row it matched: no join, no row
leaves the server); on SQLite a sha256 over the rows in
position order. The digest is a sha256 over the bundle's checksum, the options that
shape the plan (strategy, entity) and every part.

`ImportSession` with `plan_digest` looks the preview up (a dry run recorded with that
digest), and compares each entity's part as soon as it is resolved: the first that
differs stops the run before that entity is written, with FailedPrecondition naming the
entity, the counts previewed and now, records edited since the preview and the imports
committed or undone since; the rest is rolled back. A different file is named too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.db.import_models import Import
from ferry.db.models import aware
from ferry.errors import FailedPrecondition
from ferry.merge import store
from ferry.merge.model import EntitySummary, MergeOptions
from ferry.merge.shape import Shape, q

T: sa.Table = Import.__table__  # type: ignore[assignment]

# Edited records and later imports quoted when a plan no longer holds.
NAMED = 5


def _part(conn: Connection, sql_pg: str, sql_lite: str) -> str:
    if conn.dialect.name == "sqlite":
        h = hashlib.sha256()
        n = 0
        for row in conn.exec_driver_sql(sql_lite):
            n += 1
            h.update("|".join("" if v is None else str(v) for v in row).encode())
            h.update(b"\n")
        return f"{n}:{h.hexdigest()[:32]}"
    n, total = conn.exec_driver_sql(sql_pg).one()
    return f"{int(n)}:{int(total)}"


def entity_part(conn: Connection, shape: Shape, statuses: str) -> str:
    """The fingerprint of an entity's resolved statuses and the versions of the rows they
    match (call right after plan.resolve, before applying)."""
    table = q(shape.entity.table.name)
    # PostgreSQL: the matched row's version was read by the resolve (tver), no join.
    fields = "x.pos, x.st, x.tid, extract(epoch from x.tver)"
    return _part(
        conn,
        f"SELECT count(*), coalesce(sum(hashtextextended(concat_ws('|', {fields}), 0)), 0) "
        f"FROM {statuses} x",
        f"SELECT x.pos, x.st, x.tid, t.updated_at FROM {statuses} x "
        f"LEFT JOIN {table} t ON t.id = x.tid ORDER BY x.pos",
    )


def scope_part(conn: Connection, shape: Shape) -> str:
    """The fingerprint of the live rows of a replace's scope (plan.scope_snapshot)."""
    table = q(shape.entity.table.name)
    return _part(
        conn,
        "SELECT count(*), coalesce(sum(hashtextextended(concat_ws('|', t.id, "
        f"extract(epoch from t.updated_at)), 0)), 0) FROM {shape.scope} s "
        f"JOIN {table} t ON t.id = s.id",
        f"SELECT t.id, t.updated_at FROM {shape.scope} s JOIN {table} t ON t.id = s.id "
        "ORDER BY t.id",
    )


def digest(source_sha256: str, options: MergeOptions, entity: str, parts: dict[str, str]) -> str:
    """The plan's digest (hex sha256)."""
    h = hashlib.sha256()
    h.update(f"ferry-plan-1\n{source_sha256}\n{options.strategy}\n{entity}\n".encode())
    h.update(f"{options.on_error}\n".encode())
    for name in sorted(parts):
        h.update(f"{name}={parts[name]}\n".encode())
    return h.hexdigest()


class Preview:
    """The dry run a plan_digest names, as recorded."""

    def __init__(self, row: Any) -> None:
        self.id: str = row.id
        self.created_at: dt.datetime = aware(row.created_at)
        self.source_sha256: str = row.source_sha256
        self.parts: dict[str, str] = dict((row.plan or {}).get("parts", {}))
        self.approval: dict[str, str] = dict((row.plan or {}).get("approval") or {})
        self.expires_at = store.expiry(row.plan)
        opts = dict(row.options or {})
        self.options = (
            f"strategy {opts.get('strategy', 'update')}, on_error {opts.get('on_error', 'abort')}"
        )
        self.summaries: dict[str, dict[str, int]] = {s["entity"]: s for s in row.summaries or []}


def find_preview(conn: Connection, plan_digest: str) -> Preview:
    """The dry run recorded with `plan_digest`; FailedPrecondition when there is none."""
    text = plan_digest.strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise FailedPrecondition(
            "plan_digest is not a plan digest (64 hex digits, as a dry run returns it)",
            field="options.plan_digest",
        )
    row = conn.execute(
        sa.select(T)
        .where(store.mine(), T.c.plan_digest == text, T.c.status == "dry_run")
        .order_by(T.c.created_at.desc())
        .limit(1)
    ).first()
    if row is None:
        raise FailedPrecondition(
            f"no preview has plan digest {text} (or its plan expired and the cleanup "
            "removed it): preview the file (dry run) and import with the digest it "
            "returns; nothing was imported",
            field="options.plan_digest",
        )
    return Preview(row)


_COUNTED = ("created", "updated", "unchanged", "skipped", "unmatched", "deleted", "errors")


def _counts(summary: dict[str, int] | EntitySummary | None) -> str:
    if summary is None:
        return "nothing"
    values = summary if isinstance(summary, dict) else vars(summary)
    said = [f"{values.get(k, 0)} {k}" for k in _COUNTED if values.get(k, 0)]
    return ", ".join(said) or "nothing"


def check_source(preview: Preview, source_sha256: str) -> None:
    """FailedPrecondition when the file is not the previewed one."""
    if source_sha256 and preview.source_sha256 and source_sha256 != preview.source_sha256:
        raise FailedPrecondition(
            f"the file is not the one previewed in {preview.id} (sha256 "
            f"{preview.source_sha256[:12]}… previewed, {source_sha256[:12]}… now); "
            "nothing was imported",
            field="options.plan_digest",
        )


def refuse_changed(
    conn: Connection,
    preview: Preview,
    name: str,
    shape: Shape | None,
    now: EntitySummary | None,
) -> FailedPrecondition:
    """The error for an entity whose part differs from the preview's: the counts then and
    now, records edited since (their updated_at is later than the preview) and the
    imports committed or undone since."""
    since = preview.created_at
    if shape is None:  # the bundle's renames found other records than in the preview
        return FailedPrecondition(
            f"the data changed since the preview {preview.id}: the records its renames "
            "name changed; nothing was imported: preview again",
            field="options.plan_digest",
        )
    table = q(shape.entity.table.name)
    key = ", ".join(f"x.{q(k)}" for k in shape.entity.natural_key)
    if conn.dialect.name == "sqlite":
        stamp: Any = since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    else:
        stamp = since
    if name.startswith("scope:"):
        rows = conn.execute(
            sa.text(
                f"SELECT t.id FROM {shape.scope} s JOIN {table} t ON t.id = s.id "
                f"WHERE t.updated_at > :since ORDER BY t.id LIMIT {NAMED}"
            ),
            {"since": stamp},
        ).all()
        edited = [f"id {r[0]}" for r in rows]
    else:
        rows = conn.execute(
            sa.text(
                f"SELECT {key} FROM {shape.resolved} x JOIN {table} t ON t.id = x.tid "
                f"WHERE t.updated_at > :since ORDER BY x.pos LIMIT {NAMED}"
            ),
            {"since": stamp},
        ).all()
        edited = ["/".join("" if v is None else str(v) for v in r) for r in rows]
    later = conn.execute(
        sa.select(T.c.id, T.c.status, T.c.finished_at, T.c.undone_at)
        .where(
            store.mine(),
            T.c.id != preview.id,
            sa.or_(
                sa.and_(T.c.status.in_(("completed", "undone")), T.c.finished_at > since),
                T.c.undone_at > since,
            ),
        )
        .order_by(T.c.created_at.desc())
        .limit(NAMED)
    ).all()
    entity = shape.name
    parts = [f"the data changed since the preview {preview.id}"]
    if name.startswith("scope:"):
        parts.append(f"the live {entity} records this replace may soft-delete changed")
    else:
        parts.append(
            f"{entity}: the preview would have {_counts(preview.summaries.get(entity))}; "
            f"now {_counts(now)}"
        )
    if edited:
        parts.append(f"{entity} edited since: {', '.join(edited)}")
    for r in later:
        if r.undone_at is not None and aware(r.undone_at) > since:
            parts.append(f"import {r.id} was undone at {aware(r.undone_at):%Y-%m-%d %H:%M:%S}Z")
        else:
            when = aware(r.finished_at) if r.finished_at else since
            parts.append(f"import {r.id} committed at {when:%Y-%m-%d %H:%M:%S}Z")
    return FailedPrecondition(
        "; ".join(parts) + "; nothing was imported: preview again",
        field="options.plan_digest",
    )


def refuse_different(preview: Preview, parts: dict[str, str]) -> FailedPrecondition:
    """The error for a run whose every compared part held but whose digest differs: other
    options (strategy, on_error, entity) or other entities than the preview's."""
    missing = sorted(set(preview.parts) - set(parts))
    extra = sorted(set(parts) - set(preview.parts))
    said = [f"this import does not match the preview {preview.id}"]
    if missing:
        said.append(f"the preview also merged {', '.join(missing)}")
    if extra:
        said.append(f"the preview did not merge {', '.join(extra)}")
    if not missing and not extra:
        said.append(f"its options differ (the preview's: {preview.options})")
    return FailedPrecondition(
        "; ".join(said) + "; nothing was imported", field="options.plan_digest"
    )
