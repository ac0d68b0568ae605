"""Helpers for merge tests: bundles from a database, table checksums, small edits."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.merge import ImportOutcome, MergeOptions, run_import

SEMESTER = "2026-fall"


def bundle(engine: Engine, semester: str = SEMESTER) -> list[Event]:
    """The semester's bundle as events, soft-deleted records included (so the tests
    cover importing deletions)."""
    return list(session_events(engine, SCHOOL, SessionRequest(semester, include_deleted=True)))


def records(events: list[Event]) -> dict[str, list[dict[str, Any]]]:
    """Records per entity."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if isinstance(e, Batch):
            out.setdefault(e.entity, []).extend(e.records)
    return out


def rebuild(by_entity: dict[str, list[dict[str, Any]]], semester: str = SEMESTER) -> list[Event]:
    """A bundle (Header, one Batch per entity, Trailer) from records per entity."""
    from ferry.v1 import bundle_pb2 as pb

    events: list[Event] = [Header(pb.BundleMetadata(semester=semester, dataset="school"))]
    for entity in SCHOOL.in_order():
        if entity.name in by_entity:
            events.append(Batch(entity.name, by_entity[entity.name]))
    events.append(Trailer({k: len(v) for k, v in by_entity.items()}))
    return events


def edited(events: list[Event], entity: str, index: int, **changes: Any) -> list[Event]:
    """A copy of `events` with record `index` (0-based) of `entity` changed."""
    by = copy.deepcopy(records(events))
    by[entity][index].update(changes)
    # The header keeps saying the bundle's own semester (a header naming another one is
    # refused: tests/merge/test_replace_scope.py).
    semester = next((e.metadata.semester for e in events if isinstance(e, Header)), SEMESTER)
    return rebuild(by, semester)


def run(engine: Engine, events: list[Event], **options: Any) -> ImportOutcome:
    sha = options.pop("sha", "sha-of-bundle")
    entity = options.pop("entity", "")
    return run_import(
        engine,
        SCHOOL,
        events,
        MergeOptions(**options),
        requested_by="tester",
        source_sha256=sha,
        entity=entity,
    )


def counts(outcome: ImportOutcome) -> dict[str, dict[str, int]]:
    """Non-zero counters per entity."""
    out = {}
    for s in outcome.summaries:
        nz = {k: v for k, v in vars(s).items() if k != "entity" and v}
        out[s.entity] = nz
    return out


def _norm(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def checksum(engine: Engine) -> dict[str, str]:
    """A hash of every row of every dataset table, ordered by id (the school aside: the
    tables have it since migration 0013, and one school's rows are compared)."""
    out = {}
    with engine.connect() as conn:
        for entity in SCHOOL.in_order():
            table = entity.table
            digest = hashlib.sha256()
            cols = [c for c in table.c if c.name != "school_id"]
            for row in conn.execute(sa.select(*cols).order_by(table.c.id)):
                digest.update(repr(tuple(_norm(v) for v in row)).encode())
            out[entity.name] = digest.hexdigest()
    return out


def execute(engine: Engine, sql: str, **params: Any) -> int:
    with engine.begin() as conn:
        return int(conn.execute(sa.text(sql), params).rowcount)


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def comparable(
    events: list[Event], fix: Callable[[str, dict[str, Any]], None] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Records per entity as sorted tuples (the order of rows may differ between databases)."""
    out = {}
    for name, recs in records(events).items():
        rows = []
        for r in recs:
            r = dict(r)
            if fix:
                fix(name, r)
            rows.append(tuple(sorted((k, repr(_norm(v))) for k, v in r.items())))
        out[name] = sorted(rows)
    return out
