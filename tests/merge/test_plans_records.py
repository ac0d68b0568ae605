"""The plan's every-record file (ferry.merge.planfile) in-process: the narrow resolve of
PostgreSQL (a view over the staged rows) writes the same lines as the wide one, a failed
run keeps no file, and a run that is no dry run writes none."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.merge import MergeOptions, Status, plan, planfile, run_import
from tests.merge.helpers import edited, run


class Sink:
    """Files by import id, kept only when the writer's block ends cleanly."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    @contextmanager
    def __call__(self, import_id: str) -> Iterator[io.BytesIO]:
        buf = io.BytesIO()
        yield buf
        self.files[import_id] = buf.getvalue()


def _dry(target: Engine, events: list[Event], sink: Sink, **options: Any) -> Any:
    return run_import(
        target,
        SCHOOL,
        events,
        MergeOptions(dry_run=True, plan_records=True, **options),
        requested_by="tester",
        source_sha256="sha",
        plan_sink=sink,
    )


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def test_narrow_and_wide_resolves_write_the_same_records(
    events: list[Event], target: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(target, events)
    changed = edited(events, "courses", 0, title="Changed at the source")
    changed = edited(changed, "grades", 2, score=1.5)
    sink = Sink()
    wide = _dry(target, changed, sink)
    monkeypatch.setattr(plan, "NARROW_MIN_ROWS", 0)  # every entity narrow (PostgreSQL)
    narrow = _dry(target, changed, sink)
    assert wide.status is narrow.status is Status.DRY_RUN
    a, b = _lines(sink.files[wide.id]), _lines(sink.files[narrow.id])
    assert a == b
    assert len(a) == sum(len(e.records) for e in changed if hasattr(e, "records"))
    updates = [r for r in a if r["action"] == "update"]
    assert {(r["entity"], r["changes"][0]["field"]) for r in updates} == {
        ("courses", "title"),
        ("grades", "score"),
    }
    assert next(r for r in updates if r["entity"] == "courses")["changes"][0]["after"] == (
        "Changed at the source"
    )
    assert all(r["action"] == "unchanged" for r in a if r not in updates)


def test_only_a_dry_run_that_ends_as_one_keeps_its_records(
    events: list[Event], target: Engine
) -> None:
    sink = Sink()
    done = run_import(
        target,
        SCHOOL,
        events,
        MergeOptions(plan_records=True),
        requested_by="tester",
        source_sha256="sha",
        plan_sink=sink,
    )
    assert done.status is Status.COMPLETED and sink.files == {} and not done.plan_records
    bad = edited(events, "grades", 0, score="not a number")
    failed = _dry(target, bad, sink)
    assert failed.status is Status.FAILED and sink.files == {} and not failed.plan_records


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_servers_lines_are_the_python_lines_byte_for_byte(
    events: list[Event], target: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL composes the lines in SQL (planfile._pg_lines); they must be exactly what
    the Python writer (SQLite's) writes: creates, updates of every kind of value (floats
    integral or not, dates, instants with and without microseconds, text needing JSON
    escapes), soft-deletes, errors and unchanged records."""

    def both(evs: list[Event], **options: Any) -> tuple[bytes, bytes]:
        sink = Sink()
        server = _dry(target, evs, sink, **options)
        with monkeypatch.context() as m:
            m.setattr(planfile.PlanRecords, "entity", planfile.PlanRecords._py_entity)
            python = _dry(target, evs, sink, **options)
        assert server.status is python.status is Status.DRY_RUN
        return sink.files[server.id], sink.files[python.id]

    created_sql, created_py = both(events)  # into the empty database: every record created
    assert created_sql == created_py and b'"action":"create"' in created_sql
    run(target, events)
    changed = edited(events, "courses", 0, title='Άλγεβρα "2" \\ line\nnext\ttab\x01')
    changed = edited(changed, "grades", 0, score=7.0, graded_on="2026-10-02")
    changed = edited(changed, "grades", 1, score=12.25, comment=None)
    changed = edited(changed, "grades", 2, deleted_at="2026-11-01T08:30:00.250000Z")
    changed = edited(changed, "students", 0, date_of_birth=None, year_level=3)
    changed = edited(changed, "grades", 3, score="not a number")  # an error line
    server, python = both(changed, on_error="skip_invalid")
    assert server == python
    actions = {r["action"] for r in _lines(server)}
    assert actions == {"update", "delete", "error", "unchanged"}
    deleted = next(r for r in _lines(server) if r["action"] == "delete")
    assert deleted["changes"] == [
        {"field": "deleted_at", "before": "", "after": "2026-11-01T08:30:00.250000+00:00"}
    ]
