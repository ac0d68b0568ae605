"""undo_import: take a committed import back, in one transaction.

Restores the rows it updated and un-deletes those it soft-deleted (both from the saved old
rows), clears late-bound links pointing at rows it created, then deletes the created rows,
children first.

Two refusals (FailedPrecondition): rows added or changed after the import that depend on
what it did (they link to rows it created, or a later import changed rows it touched)
always refuse, naming the later imports to undo first and up to 10 dependent records;
`force` never overrides that. A row it touched that was edited since (its updated_at is
not what the import left) refuses unless forced.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle import semesters
from ferry.datasets.spec import Dataset, Entity
from ferry.db import tenant
from ferry.errors import FailedPrecondition, NotFound
from ferry.merge import links, renames, store, threeway
from ferry.merge.model import ImportOutcome, Status
from ferry.merge.run import begin_locked
from ferry.merge.shape import differs, key_lookup, q
from ferry.reports import versions
from ferry.reports.versions import bump_and_touched

log = logging.getLogger(__name__)
MAX_NAMED = 10
_CHANGES = "import_changes"


def undo_import(
    engine: Engine, ds: Dataset, import_id: str, *, force: bool = False, requested_by: str = ""
) -> ImportOutcome:
    """Undo import `import_id`; returns its outcome, now UNDONE.

    NotFound for an unknown id; FailedPrecondition when it is not a completed import
    (failed, dry run, already undone) or when records it touched changed since (unless
    `force`: their later changes are then lost).
    """
    clock = time.perf_counter()
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as conn:
        begin_locked(conn, ds.name)
        outcome = store.load(conn, import_id)
        if outcome is None:
            raise NotFound(f"import {import_id!r} does not exist", field="import_id")
        if outcome.status is not Status.COMPLETED:
            what = {
                Status.UNDONE: "was already undone",
                Status.FAILED: "failed and changed nothing",
                Status.DRY_RUN: "was a dry run and changed nothing",
            }[outcome.status]
            raise FailedPrecondition(f"import {import_id} {what}", field="import_id")
        refusal = _depended_on(conn, ds, outcome)
        if refusal:
            raise FailedPrecondition(refusal, field="import_id")
        if not force:
            total, named = _changed_since(conn, ds, import_id, sqlite)
            if total:
                raise FailedPrecondition(
                    f"{total} record(s) changed after import {import_id}: {', '.join(named)}"
                    f"{', ...' if total > len(named) else ''}; undo with force to discard "
                    "those later changes",
                    field="import_id",
                )
        # Before created rows go: they name the students.
        _, touched = bump_and_touched(conn, ds, import_id, created=True)  # rows not back yet
        entities = ds.in_order()
        params = {"iid": import_id}
        for e in entities:
            _clear_links_to_created(conn, ds, e, params)
        for e in entities:
            _restore(conn, e, params, sqlite)
        for e in reversed(entities):
            _delete_created(conn, e, import_id)
        links.undo(conn, import_id)
        threeway.forget(conn, import_id)  # its bases go with it
        renames.undo(conn, ds, import_id, sqlite)  # old keys back
        outcome.status = Status.UNDONE
        outcome.undone_at = dt.datetime.now(dt.UTC)
        store.update(conn, outcome, claim_key=bool(outcome.options.idempotency_key))
        semesters.recount(conn, ds, touched)  # ListSemesters' counts, with the data
        # The undo is about to commit (rows of import_changes for import_id say what it
        # took back): anything that must change with the data goes right here.
        threeway.importing(conn, False)
        conn.commit()
        was_changed = versions.changed(conn)
    # No reports process serves a report from before the undo once it returns.
    versions.settle(engine, was_changed)
    log.info(
        "import %s undone by %s in %.2fs%s",
        import_id,
        requested_by or "?",
        time.perf_counter() - clock,
        " (forced)" if force else "",
    )
    return outcome


def _mine(alias: str) -> str:
    """SQL: the row `alias` is of the acting school (the application scope, the first
    wall: an undo reads and writes its school's rows only, whatever role runs it)."""
    return tenant.scope_sql(alias)


def _ranges(conn: Connection, import_id: str, entity: str) -> list[tuple[int, int]]:
    rows = conn.execute(
        sa.text(
            f"SELECT row_id, row_id_end FROM {_CHANGES} c WHERE {_mine('c')} "
            "AND c.import_id = :iid "
            "AND entity = :e AND action = 'created'"
        ),
        {"iid": import_id, "e": entity},
    )
    return [(int(a), int(b)) for a, b in rows]


def _created(entity: str, column: str) -> str:
    """SQL: `column` holds the id of a row the import created in `entity`."""
    return (
        f"EXISTS (SELECT 1 FROM {_CHANGES} c WHERE {_mine('c')} AND c.import_id = :iid "
        f"AND c.entity = '{entity}' "
        f"AND c.action = 'created' AND {column} BETWEEN c.row_id AND c.row_id_end)"
    )


def _touched(entity: str, column: str) -> str:
    """SQL: import :iid recorded the row `column` of `entity` as created (its id in one of
    the created ranges), updated or soft-deleted."""
    return (
        f"EXISTS (SELECT 1 FROM {_CHANGES} c WHERE {_mine('c')} AND c.import_id = :iid "
        f"AND c.entity = '{entity}' AND ((c.action = 'created' "
        f"AND {column} BETWEEN c.row_id AND c.row_id_end) "
        f"OR (c.action <> 'created' AND c.row_id = {column})))"
    )


def _by_later_import(entity: str, column: str) -> str:
    """SQL: another completed import that recorded the row `column` of `entity` (created
    or changed it; the greatest id when several did), or NULL when none did (an edit
    made outside any import)."""
    return (
        f"(SELECT max(c2.import_id) FROM {_CHANGES} c2 JOIN imports i2 ON i2.id = c2.import_id "
        f"WHERE {_mine('c2')} AND i2.status = 'completed' AND c2.import_id <> :iid "
        f"AND c2.entity = '{entity}' "
        f"AND ((c2.action = 'created' AND {column} BETWEEN c2.row_id AND c2.row_id_end) "
        f"OR (c2.action <> 'created' AND c2.row_id = {column})))"
    )


def _depended_on(conn: Connection, ds: Dataset, outcome: ImportOutcome) -> str:
    """Why undoing `outcome` would remove or change rows later work depends on, or "".

    Two kinds of dependents: rows of other imports (or edits) that link to rows this
    import created (undo would delete their parents, or clear their links), and rows this
    import touched that a later import changed again (undo would overwrite that import's
    work, and that import's own undo would then restore the wrong rows). Neither is
    overridable: undo the later imports first, newest first.
    """
    params: dict[str, Any] = {"iid": outcome.id}
    last = conn.execute(
        sa.text(f"SELECT max(c.id) FROM {_CHANGES} c WHERE {_mine('c')} AND c.import_id = :iid"),
        params,
    ).scalar_one()
    if last is None:
        return ""
    params["last"] = last
    found: list[str] = []  # "SELECT id, import_id" per entity, of the dependent rows
    for child in ds.in_order():
        table = q(child.table.name)
        # Later imports that changed rows this import touched.
        found.append(
            f"SELECT '{child.name}' AS entity, c2.row_id AS id, c2.import_id AS by_import "
            f"FROM {_CHANGES} c2 JOIN imports i2 ON i2.id = c2.import_id "
            f"WHERE {_mine('c2')} AND c2.entity = '{child.name}' AND c2.action <> 'created' "
            f"AND c2.id > :last "
            f"AND c2.import_id <> :iid AND i2.status = 'completed' "
            f"AND {_touched(child.name, 'c2.row_id')}"
        )
        # Rows not of this import that link to rows it created.
        for ref in child.references:
            col = f"t.{q(ref.column)}"
            found.append(
                f"SELECT '{child.name}' AS entity, t.id AS id, "
                f"{_by_later_import(child.name, 't.id')} AS by_import "
                f"FROM {_CHANGES} c JOIN {table} t ON {col} BETWEEN c.row_id AND c.row_id_end "
                f"WHERE {_mine('c')} AND c.import_id = :iid AND c.entity = '{ref.parent}' "
                f"AND c.action = 'created' AND NOT {_touched(child.name, 't.id')}"
            )
    union = " UNION ".join(found)
    rows = conn.execute(
        sa.text(f"SELECT by_import, count(*) FROM ({union}) z GROUP BY by_import"), params
    ).all()
    if not rows:
        return ""
    total = sum(int(n) for _, n in rows)
    later = sorted(str(i) for i, _ in rows if i is not None)
    edits = sum(int(n) for i, n in rows if i is None)
    sample: list[str] = []
    for e in ds.in_order():
        if len(sample) >= MAX_NAMED:
            break
        keys = ", ".join(f"k.{q(f)}" for f in e.natural_key)
        for row in conn.execute(
            sa.text(
                f"SELECT {keys} FROM ({union}) z JOIN ({key_lookup(ds, e)}) k ON k.id = z.id "
                f"WHERE z.entity = '{e.name}' ORDER BY k.id LIMIT {MAX_NAMED - len(sample)}"
            ),
            params,
        ):
            sample.append(f"{e.name} " + "/".join("" if v is None else str(v) for v in row))
    text = (
        f"import {outcome.id} cannot be undone: {total} record(s) added or changed after it "
        f"depend on what it created or changed ({', '.join(sample)}"
        f"{', ...' if total > len(sample) else ''})"
    )
    if later:
        others = [o for o in (store.load(conn, i) for i in later) if o is not None]
        others.sort(key=lambda o: o.created_at, reverse=True)
        listed = [f"{o.id} ({o.created_at.strftime('%Y-%m-%d %H:%M:%S UTC')})" for o in others]
        text += (
            f"; they come from later import(s) {', '.join(listed)}: undo "
            f"{'it' if len(later) == 1 else 'those'} first, newest first"
        )
    if edits:
        text += (
            f"; {edits} of them were added or changed outside any import and must be "
            "removed or changed back first"
        )
    return text + "; force does not override this"


def _changed_since(
    conn: Connection, ds: Dataset, import_id: str, sqlite: bool
) -> tuple[int, list[str]]:
    """How many touched records changed after the import, and up to 10 of them named."""
    total, named = 0, list[str]()
    params = {"iid": import_id}
    for e in ds.in_order():
        table = q(e.table.name)
        touched = (
            f"SELECT c.row_id AS id FROM {_CHANGES} c LEFT JOIN {table} t ON t.id = c.row_id "
            f"WHERE {_mine('c')} AND c.import_id = :iid AND c.entity = '{e.name}' "
            "AND c.action <> 'created' "
            f"AND (t.id IS NULL OR {differs('t.updated_at', 'c.new_updated_at', sqlite)}) "
            f"UNION ALL SELECT t.id AS id FROM {table} t JOIN {_CHANGES} c "
            f"ON t.id BETWEEN c.row_id AND c.row_id_end WHERE {_mine('c')} AND c.import_id = :iid "
            f"AND c.entity = '{e.name}' AND c.action = 'created' "
            "AND t.updated_at > c.new_updated_at"
        )
        n = int(conn.execute(sa.text(f"SELECT count(*) FROM ({touched}) z"), params).scalar_one())
        if not n:
            continue
        total += n
        if len(named) < MAX_NAMED:
            keys = ", ".join(f"k.{q(f)}" for f in e.natural_key)
            rows = conn.execute(
                sa.text(
                    f"SELECT z.id, {keys} FROM ({touched}) z LEFT JOIN ({key_lookup(ds, e)}) k "
                    f"ON k.id = z.id ORDER BY z.id LIMIT {MAX_NAMED - len(named)}"
                ),
                params,
            )
            for row in rows:
                key = "/".join("" if v is None else str(v) for v in row[1:])
                named.append(f"{e.name} {key or f'(id {row[0]}, deleted)'}")
    return total, named


def _clear_links_to_created(
    conn: Connection, ds: Dataset, e: Entity, params: dict[str, Any]
) -> None:
    """Unset late-bound links to rows about to be deleted (they may point either way)."""
    table = q(e.table.name)
    for ref in e.references:
        if ds.is_late(e.name, ref):
            column = f"{table}.{q(ref.column)}"
            where = _created(ref.parent, column)
            conn.execute(
                sa.text(
                    f"UPDATE {table} SET {q(ref.column)} = NULL WHERE {where} AND {_mine(table)}"
                ),
                params,
            )


def _restore(conn: Connection, e: Entity, params: dict[str, Any], sqlite: bool) -> None:
    """Put back the saved old rows of updated and soft-deleted records."""
    table = q(e.table.name)
    cols = [c for c in e.table.c if c.name != "id"]
    where = (
        f"{_mine('c')} AND c.import_id = :iid AND c.entity = '{e.name}' "
        "AND c.action IN ('updated', 'deleted')"
    )
    if sqlite:
        sets = []
        for c in cols:
            value = f"json_extract(c.old_values, '$.{c.name}')"
            if isinstance(c.type, sa.Float):
                value = f"CAST({value} AS REAL)"
            sets.append(f"{q(c.name)} = {value}")
        conn.execute(
            sa.text(
                f"UPDATE {table} SET {', '.join(sets)} FROM {_CHANGES} c "
                f"WHERE {where} AND {table}.id = c.row_id AND {_mine(table)}"
            ),
            params,
        )
        return
    sets = [f"{q(c.name)} = o.{q(c.name)}" for c in cols]
    conn.execute(
        sa.text(
            f"UPDATE {table} SET {', '.join(sets)} FROM (SELECT c.row_id AS row_id_, "
            f"(jsonb_populate_record(CAST(NULL AS {table}), c.old_values)).* "
            f"FROM {_CHANGES} c WHERE {where}) o WHERE {table}.id = o.row_id_ AND {_mine(table)}"
        ),
        params,
    )


def _delete_created(conn: Connection, e: Entity, import_id: str) -> None:
    table = q(e.table.name)
    for a, b in _ranges(conn, import_id, e.name):
        conn.execute(
            sa.text(f"DELETE FROM {table} WHERE id BETWEEN :a AND :b AND {_mine(table)}"),
            {"a": a, "b": b},
        )
