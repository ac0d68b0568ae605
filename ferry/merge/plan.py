"""Set-based validation and classification of one staged entity.

One CREATE TEMP TABLE ... AS SELECT per entity resolves every parent reference by natural
key (against the database, where parents of this run are already applied), finds the
existing row, flags duplicate keys and missing parents, compares all data columns and
gives each staged row a status:

    error      refused value, duplicate natural key, or a parent that exists nowhere
    create     new record (strategy update, skip, replace)
    update     existing record that differs
    same       existing record identical to the bundle: no write
    skip       existing record left alone (strategy skip)
    unmatched  unknown key (strategy update_only), or its parent is unmatched

Late-bound links (course prerequisite, student mentor) are optional: a semester's bundle
may name a parent outside it (a prerequisite from an earlier semester). Such a link is
bound when the parent exists in the bundle or the database, and left unset otherwise
rather than rejecting the record. Required parents that exist nowhere are errors.

Compared columns: every field the records carry except created_at/updated_at (kept by
Ferry); deleted_at is data. A field the file does not carry (a csv without the column) is
neither compared nor written, so a partial file changes only what it carries; a record
to create that lacks a required field is the error `absent`. Late-bound references
compare against the database's current parent ids.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.query import in_scope
from ferry.datasets.spec import Dataset, Kind
from ferry.db import tenant
from ferry.merge import links, planfile
from ferry.merge.header import ScopeCheck
from ferry.merge.model import (
    MAX_LISTED_ERRORS,
    MAX_SAMPLES_PER_ENTITY,
    EntitySummary,
    RecordChange,
    RecordError,
    Strategy,
)
from ferry.merge.shape import Col, Ref, Shape, key_lookup, key_match, q, same, text_of


def _keys(r: Ref, row: str) -> list[str]:
    return [f"{row}.{q(f)}" for f in r.ref.fields]


def _tuple(exprs: list[str]) -> str:
    return exprs[0] if len(exprs) == 1 else f"({', '.join(exprs)})"


def resolve(
    conn: Connection,
    ds: Dataset,
    shape: Shape,
    shapes: dict[str, Shape],
    strategy: Strategy,
    sqlite: bool,
    resolved: frozenset[str] = frozenset(),
    narrow: bool = False,
    scope: ScopeCheck | None = None,
    lines: bool = False,
) -> str:
    """Build the entity's resolved rows (staged columns + r<i> parent ids, tid, st, err;
    PostgreSQL: tver, the updated_at of the existing row, which the plan digest reads).
    `resolved`: the entities this run resolved before (their statuses can be consulted).

    Returns the table that holds each row's status: the resolved table itself, or with
    `narrow` (PostgreSQL, when most rows are expected to exist already, as in a
    re-import) a table of only pos, ids and statuses, with the resolved rows a view
    joining it to the staged ones: most rows then only ever need their status, and the
    staged columns are not copied. Narrow views are dropped by drop_views.
    `scope`: conditions putting a row outside the bundle's semester, the columns they
    need and the parent lookups that carry `in_scope` (ferry.merge.header.ScopeCheck);
    such rows get the status `scope`.
    `lines` (PostgreSQL): compose each record's plan line (ferry.merge.planfile) in the
    same pass, as the column plan_line of the returned table, while the staged row is at
    hand: writing the plan's records then reads that table alone, no second scan of the
    staged rows joined to their statuses."""
    scope = scope or ScopeCheck()
    table = q(shape.entity.table.name)
    select = ["s.*"]
    joins = []
    # Only carried fields are compared: a partial file changes only what it carries.
    equal = [same(f"t.{q(c.target)}", f"s.{q(c.name)}", sqlite) for c in shape.written]
    for r in shape.refs:
        i = r.index
        on = " AND ".join(
            f"p{i}.{q(theirs)} = s.{q(own)}"
            for own, theirs in zip(r.ref.fields, r.parent.natural_key, strict=True)
        )
        lookup = key_lookup(ds, r.parent, scope.lookups.get(i))
        joins.append(f"LEFT JOIN ({lookup}) p{i} ON {on}")
        select.append(f"p{i}.id AS r{i}")
        if not shape.carries_ref(r):
            continue
        if r.late:
            # The parent may still be created by this run (in the bundle): the link then
            # changes even if the database's current one matches nothing yet.
            present = " AND ".join(f"{k} IS NOT NULL" for k in _keys(r, "s"))
            pstage = shapes[r.parent.name].stage
            pkeys = ", ".join(q(k) for k in r.parent.natural_key)
            pending = (
                f"{present} AND p{i}.id IS NULL AND {_tuple(_keys(r, 's'))} IN "
                f"(SELECT {pkeys} FROM {pstage} WHERE ok = 1)"
            )
            # A link still waiting (pending_links) is the record's value: the record is
            # the same when the bundle names the same target (links.bind_waiting binds
            # it once the target exists, without touching the record's updated_at).
            waiting = links.waiting_key(shape, r, "t.id")
            named = links.joined([f"s.{q(f)}" for f in r.ref.fields])
            equal.append(
                f"(CASE WHEN {waiting} IS NOT NULL THEN "
                f"coalesce({waiting} = {named}, 0 = 1) WHEN {pending} THEN 0 = 1 "
                f"ELSE {same(f't.{q(r.ref.column)}', f'p{i}.id', sqlite)} END)"
            )
        else:
            equal.append(same(f"t.{q(r.ref.column)}", f"p{i}.id", sqlite))
    # Duplicate keys via a hash aggregate (usually empty) instead of sorting every row.
    nk = shape.entity.natural_key
    dkeys = ", ".join(q(k) for k in nk)
    joins.append(
        f"LEFT JOIN (SELECT {dkeys}, count(*) AS n FROM {shape.stage} WHERE ok = 1 "
        f"GROUP BY {dkeys} HAVING count(*) > 1) d ON "
        + " AND ".join(f"d.{q(k)} = s.{q(k)}" for k in nk)
    )
    select.append("t.id AS tid")
    if not sqlite:  # the version of the row it reads, for the plan's digest (digest.py)
        select.append("t.updated_at AS tver")
    select += scope.extra
    equal_all = " AND ".join(equal) or "1 = 1"
    select.append(f"CASE WHEN t.id IS NULL THEN 0 WHEN {equal_all} THEN 1 ELSE 0 END AS same")
    select.append("CASE WHEN s.ok = 1 THEN coalesce(d.n, 1) ELSE 0 END AS dup")
    joins.append(f"LEFT JOIN {table} t ON {key_match(shape, 't', 's', ref_prefix='p')}")
    inner = f"SELECT {', '.join(select)} FROM {shape.stage} s {' '.join(joins)}"
    err = _error_case(shape, shapes, strategy, resolved, list(scope.conds))
    if sqlite:
        status = _status_case(err, strategy, "x")
        wide = f"SELECT x.*, {err} AS err, {status} AS st FROM ({inner}) x"
    else:
        # The error case is computed once per row (OFFSET 0 keeps PostgreSQL from pulling
        # the subquery up, which would copy it into each branch of the status case).
        status = _status_case("y.err", strategy, "y")
        line = f", {planfile.line_sql(shape, 'y', status)} AS plan_line" if lines else ""
        wide = (
            f"SELECT y.*, {status} AS st{line} FROM (SELECT x.*, {err} AS err FROM ({inner}) x "
            "OFFSET 0) y"
        )
    if not narrow:
        conn.exec_driver_sql(f"CREATE TEMP TABLE {shape.resolved}{_on_commit(sqlite)} AS {wide}")
        if not sqlite:
            conn.exec_driver_sql(f"ANALYZE {shape.resolved}")
        return shape.resolved
    core = f"{shape.resolved}_status"
    ids = ["pos", "tid", "tver", "dup", *(f"r{r.index}" for r in shape.refs)]
    # The staged values a plan line shows pass through to it (they are not kept).
    key = shape.entity.natural_key
    shown = [f"x.{q(c.name)}" for c in shape.cols if shape.carries(c.name) or c.name in key]
    shown = shown if lines else []
    line = f", {planfile.line_sql(shape, 'y', status)} AS plan_line" if lines else ""
    conn.exec_driver_sql(
        f"CREATE TEMP TABLE {core} ON COMMIT DROP AS "
        f"SELECT {', '.join(f'y.{c}' for c in ids)}, y.err, {status} AS st{line} FROM "
        f"(SELECT {', '.join([*(f'x.{c}' for c in ids), *shown])}, x.same, {err} AS err "
        f"FROM ({inner}) x OFFSET 0) y"
    )
    conn.exec_driver_sql(f"ANALYZE {core}")
    extra = ", ".join(["c.tid", "c.dup", *(f"c.r{r.index}" for r in shape.refs), "c.err", "c.st"])
    conn.exec_driver_sql(
        f"CREATE TEMP VIEW {shape.resolved} AS SELECT s.*, {extra} "
        f"FROM {core} c JOIN {shape.stage} s ON s.pos = c.pos"
    )
    return core


NARROW_MIN_ROWS = 20_000  # smaller entities are always resolved wide


def mostly_existing(conn: Connection, shape: Shape, staged: int) -> bool:
    """Whether the entity's table holds at least half as many rows as were staged (its
    rows counted only that far): then most staged rows are likely to exist already and
    a narrow resolve pays (see resolve)."""
    half = staged // 2
    if staged < NARROW_MIN_ROWS:
        return False
    table = q(shape.entity.table.name)
    held = conn.exec_driver_sql(
        f"SELECT count(*) FROM (SELECT 1 FROM {table} k WHERE {tenant.scope_sql('k')} "
        f"LIMIT {int(half)}) t"
    ).scalar_one()
    return bool(held >= half)


def drop_views(conn: Connection, shapes: list[Shape]) -> None:
    """Drop the narrow resolved views (a view outlives the transaction, and would hold
    on to the tables it reads): before the transaction ends."""
    for shape in shapes:
        conn.exec_driver_sql(f"DROP VIEW IF EXISTS {shape.resolved}")


def _on_commit(sqlite: bool) -> str:
    # PostgreSQL drops them with the transaction; SQLite's are dropped by the run.
    return "" if sqlite else " ON COMMIT DROP"


def _error_case(
    shape: Shape,
    shapes: dict[str, Shape],
    strategy: Strategy,
    resolved: frozenset[str],
    outside: list[str],
) -> str:
    whens = ["WHEN x.ok = 0 THEN 'value'"]
    if outside:  # not of the bundle's semester: the whole import is refused
        whens.append(f"WHEN {' OR '.join(outside)} THEN 'scope'")
    whens.append("WHEN x.dup > 1 THEN 'duplicate'")
    # Dates against the spec's range, set-based: the json reader's raw runs reach the
    # staging table unconverted (numbers are held to theirs by the reader's check).
    for c in _ranged_dates(shape):
        low, high = (d.isoformat() for d in c.range or ())
        whens.append(
            f"WHEN x.{q(c.name)} < '{low}' OR x.{q(c.name)} > '{high}' THEN 'range:{c.name}'"
        )
    if shape.lacking and strategy is not Strategy.UPDATE_ONLY:
        # A new record needs every required field; the file does not carry some.
        whens.append("WHEN x.tid IS NULL THEN 'absent'")
    for r in shape.refs:
        keys = _keys(r, "x")
        if r.late:
            continue  # optional links: see the module doc
        present = " OR ".join(f"{k} IS NOT NULL" for k in keys)
        missing = f"({present}) AND x.r{r.index} IS NULL"
        if strategy is Strategy.UPDATE_ONLY and r.parent.name in resolved:
            pkeys = ", ".join(q(k) for k in r.parent.natural_key)
            parent = shapes[r.parent.name].resolved
            whens.append(
                f"WHEN {missing} AND {_tuple(keys)} IN "
                f"(SELECT {pkeys} FROM {parent} WHERE st = 'unmatched') THEN 'unmatched'"
            )
        whens.append(f"WHEN {missing} THEN 'ref{r.index}'")
    return f"(CASE {' '.join(whens)} ELSE NULL END)"


def _ranged_dates(shape: Shape) -> list[Col]:
    return [c for c in shape.cols if c.kind is Kind.DATE and c.range and shape.carries(c.name)]


def _status_case(err: str, strategy: Strategy, row: str) -> str:
    new = "'unmatched'" if strategy is Strategy.UPDATE_ONLY else "'create'"
    existing = (
        "'skip'"
        if strategy is Strategy.SKIP
        else f"CASE WHEN {row}.same = 1 THEN 'same' ELSE 'update' END"
    )
    # A valid row (err NULL, nearly all) is decided by the first branch.
    return (
        f"(CASE WHEN {err} IS NULL THEN (CASE WHEN {row}.tid IS NULL THEN {new} "
        f"ELSE {existing} END) WHEN {err} = 'unmatched' THEN 'unmatched' "
        f"WHEN {err} = 'scope' THEN 'scope' ELSE 'error' END)"
    )


_COUNTERS = {
    "create": "created",
    "update": "updated",
    "same": "unchanged",
    "skip": "skipped",
    "unmatched": "unmatched",
    "error": "errors",
}


class OutOfScope(Exception):
    """Resolved rows of status `scope` (not of the bundle's semester): the run is refused
    (ferry.merge.header.refuse_out_of_scope names the first)."""


def summarize(conn: Connection, shape: Shape, statuses: str) -> EntitySummary:
    """Counts of the entity's resolved rows per status (`statuses`: what resolve returned).
    Raises OutOfScope when some are outside the bundle's semester."""
    summary = EntitySummary(shape.name)
    rows = conn.exec_driver_sql(f"SELECT st, count(*) FROM {statuses} GROUP BY st").all()
    for st, n in rows:
        if st == "scope":
            raise OutOfScope(shape.name)
        setattr(summary, _COUNTERS[st], int(n))
    return summary


def count_deletions(conn: Connection, shape: Shape) -> int:
    """How many of the rows to update arrive soft-deleted while live in the database
    (a delta's deletions, or a full bundle's): counted as deleted, not updated (call
    before applying)."""
    if not any(c.target == "deleted_at" for c in shape.written):
        return 0  # a file without deleted_at never deletes nor un-deletes
    table = q(shape.entity.table.name)
    return int(
        conn.exec_driver_sql(
            f"SELECT count(*) FROM {shape.resolved} x JOIN {table} t ON t.id = x.tid "
            "WHERE x.st = 'update' AND x.deleted_at IS NOT NULL AND t.deleted_at IS NULL"
        ).scalar_one()
    )


def list_errors(
    conn: Connection, shape: Shape, shapes: dict[str, Shape], limit: int = MAX_LISTED_ERRORS
) -> list[RecordError]:
    """The first errors found in SQL (values refused in Python are listed by the stager)."""
    key = ", ".join(f"x.{q(k)}" for k in shape.entity.natural_key)
    ref_fields = [f for r in shape.refs for f in r.ref.fields]
    ref_cols = [f"x.{q(f)}" for f in ref_fields]
    # Whether each parent is in the bundle at all: then it was rejected itself.
    in_bundle = [
        f"CASE WHEN {_tuple(_keys(r, 'x'))} IN (SELECT "
        f"{', '.join(q(k) for k in r.parent.natural_key)} FROM {shapes[r.parent.name].stage}) "
        "THEN 1 ELSE 0 END"
        for r in shape.refs
    ]
    dates = _ranged_dates(shape)
    rows = conn.exec_driver_sql(
        f"SELECT x.pos, x.err, x.dup, "
        f"{', '.join([key, *ref_cols, *in_bundle, *(f'x.{q(c.name)}' for c in dates)])} "
        f"FROM {shape.resolved} x "
        f"WHERE x.st = 'error' AND x.ok = 1 ORDER BY x.pos LIMIT {int(limit)}"
    )
    nkey = len(shape.entity.natural_key)
    out = []
    for row in rows:
        pos, err, dup = row[0], row[1], row[2]
        keyvals = row[3 : 3 + nkey]
        refvals = dict(zip(ref_fields, row[3 + nkey : 3 + nkey + len(ref_fields)], strict=True))
        rejected = row[3 + nkey + len(ref_fields) : 3 + nkey + len(ref_fields) + len(shape.refs)]
        values = dict(zip([c.name for c in dates], row[len(row) - len(dates) :], strict=True))
        display = "/".join(text_of(v) for v in keyvals)
        if err.startswith("range:"):
            field = err[len("range:") :]
            low, high = (d.isoformat() for d in shape.col(field).range or ())
            reason = f"out of range: {text_of(values[field])} (allowed: {low} to {high})"
            code, details = (
                "OUT_OF_RANGE",
                {"value": text_of(values[field]), "low": low, "high": high},
            )
        elif err == "duplicate":
            field = ",".join(shape.entity.natural_key)
            reason = f"duplicate natural key: the bundle holds it {int(dup)} times"
            code, details = "DUPLICATE_KEY", {"count": str(int(dup))}
        elif err == "absent":
            field = shape.lacking[0]
            reason = (
                f"no {shape.name} record with this key exists, and a new one needs "
                f"{', '.join(shape.lacking)}, which the file does not carry"
            )
            code, details = "ABSENT_FIELDS", {"fields": ", ".join(shape.lacking)}
        else:
            r = shape.refs[int(err[3:])]
            field = ",".join(r.ref.fields)
            value = "/".join(text_of(refvals[f]) for f in r.ref.fields)
            if rejected[r.index]:
                reason = f"its parent, {r.parent.name} record {value!r}, was rejected"
                code, details = "PARENT_REJECTED", {"parent": r.parent.name, "value": value}
            else:
                reason = (
                    f"no {r.parent.name} record with {field} {value!r} in the database or "
                    "the bundle"
                )
                code = "PARENT_MISSING"
                details = {"parent": r.parent.name, "field": field, "value": value}
        out.append(RecordError(shape.name, display, field, reason, int(pos), code, details))
    return out


def samples(
    conn: Connection, shape: Shape, creating: bool = True, updating: bool = True
) -> list[RecordChange]:
    """Up to MAX_SAMPLES_PER_ENTITY records this run creates and updates, with old and
    new values (call before applying). `creating`/`updating` False: the summary counts
    none of them, and the resolved rows are not scanned for them."""
    table = q(shape.entity.table.name)
    own = shape.written
    key = shape.entity.natural_key
    names = [c.name for c in shape.cols if shape.carries(c.name)]
    cols = ", ".join(f"x.{q(n)}" for n in names)
    olds = ", ".join(f"t.{q(c.target)}" for c in own)
    out: list[RecordChange] = []
    limit = MAX_SAMPLES_PER_ENTITY
    created = (
        f"SELECT {cols} FROM {shape.resolved} x WHERE x.st = 'create' ORDER BY x.pos LIMIT {limit}"
    )
    for row in conn.exec_driver_sql(created) if creating else ():
        rec = dict(zip(names, row, strict=True))
        changes = [(n, "", text_of(rec[n])) for n in names if not shape.col(n).bookkeeping]
        out.append(RecordChange(shape.name, _display(rec, key), "create", changes))
    updated = (
        f"SELECT {cols}, {olds} FROM {shape.resolved} x JOIN {table} t ON t.id = x.tid "
        f"WHERE x.st = 'update' ORDER BY x.pos LIMIT {limit}"
    )
    for row in conn.exec_driver_sql(updated) if updating else ():
        rec = dict(zip(names, row[: len(names)], strict=True))
        old = row[len(names) :]
        changes = [
            (c.name, text_of(o), text_of(rec[c.name]))
            for c, o in zip(own, old, strict=True)
            if text_of(o) != text_of(rec[c.name])
        ]
        deleting = any(f == "deleted_at" and not o and n for f, o, n in changes)
        action = "delete" if deleting else "update"  # arrives soft-deleted: see count_deletions
        out.append(RecordChange(shape.name, _display(rec, key), action, changes))
    return out


def _display(rec: dict[str, Any], key: tuple[str, ...]) -> str:
    return "/".join(text_of(rec[k]) for k in key)


def scope_snapshot(conn: Connection, ds: Dataset, shape: Shape, semester: str | None) -> bool:
    """Remember the ids of the entity's live rows in `semester` (None: every live row, for
    a whole-dataset bundle) before anything changes (a replace soft-deletes those the
    bundle lacks). False when a semester is given and the entity has no scope or is
    shared between scopes (students): a scoped replace never soft-deletes those."""
    if semester is not None and not shape.entity.replaced_in_scope:
        return False  # no scope, or shared between scopes (ferry.datasets.spec.Entity)
    alias = shape.entity.table.alias("t")
    query = sa.select(alias.c.id).where(
        alias.c.school_id == tenant.school_id(), in_scope(ds, shape.entity, alias, semester, False)
    )
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    sqlite = conn.dialect.name == "sqlite"
    conn.exec_driver_sql(f"CREATE TEMP TABLE {shape.scope}{_on_commit(sqlite)} AS {sql}")
    return True
