"""The plan's every-record file (ferry.merge.planfile) in-process: the narrow resolve of
PostgreSQL (a view over the staged rows) writes the same lines as the wide one, a failed
run keeps no file, and a run that is no dry run writes none."""

from __future__ import annotations

import copy
import datetime as dt
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
from tests.merge.helpers import edited, execute, rebuild, records, run


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


def _python_entity(
    self: planfile.PlanRecords, conn: Any, shape: Any, composed: str | None = None
) -> None:
    """SQLite's writer, on any backend (the reference the server's lines must equal)."""
    self._py_entity(conn, shape)


def _equal(a: bytes, b: bytes) -> None:
    """Byte for byte, failing with the first line that differs (pytest's own diff of two
    long byte strings takes minutes)."""
    pairs = zip(a.splitlines(keepends=True), b.splitlines(keepends=True), strict=False)
    first = next(((i, x, y) for i, (x, y) in enumerate(pairs) if x != y), None)
    assert first is None, f"line {first[0] + 1 if first else 0} differs: {first}"
    assert len(a) == len(b), "one holds more lines than the other"


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
    """PostgreSQL composes the lines in SQL (planfile.line_sql, in the resolve's own pass);
    they must be exactly what the Python writer (SQLite's) writes: creates, updates of
    every kind of value (floats integral or not, dates, instants with and without
    microseconds, text needing JSON escapes), soft-deletes, errors and unchanged records;
    through the wide resolve and the narrow one alike."""

    def both(evs: list[Event], **options: Any) -> tuple[bytes, bytes]:
        sink = Sink()
        server = _dry(target, evs, sink, **options)
        with monkeypatch.context() as m:
            m.setattr(plan, "NARROW_MIN_ROWS", 0)  # every entity narrow
            narrow = _dry(target, evs, sink, **options)
        with monkeypatch.context() as m:
            m.setattr(planfile.PlanRecords, "entity", _python_entity)
            python = _dry(target, evs, sink, **options)
        assert server.status is narrow.status is python.status is Status.DRY_RUN
        _equal(sink.files[narrow.id], sink.files[server.id])
        return sink.files[server.id], sink.files[python.id]

    created_sql, created_py = both(events)  # into the empty database: every record created
    _equal(created_sql, created_py)
    assert b'"action":"create"' in created_sql
    run(target, events)
    changed = edited(events, "courses", 0, title='Άλγεβρα "2" \\ line\nnext\ttab\x01')
    changed = edited(changed, "grades", 0, score=7.0, graded_on="2026-10-02")
    changed = edited(changed, "grades", 1, score=12.25, comment=None)
    changed = edited(changed, "grades", 2, deleted_at="2026-11-01T08:30:00.250000Z")
    changed = edited(changed, "students", 0, date_of_birth=None, year_level=3)
    changed = edited(changed, "grades", 3, score="not a number")  # an error line
    server, python = both(changed, on_error="skip_invalid")
    _equal(server, python)
    actions = {r["action"] for r in _lines(server)}
    assert actions == {"update", "delete", "error", "unchanged"}
    deleted = next(r for r in _lines(server) if r["action"] == "delete")
    assert deleted["changes"] == [
        {"field": "deleted_at", "before": "", "after": "2026-11-01T08:30:00.250000+00:00"}
    ]


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("narrow", [False, True])
def test_a_local_edit_kept_by_the_three_way_merge_is_no_change_in_the_lines(
    events: list[Event], target: Engine, monkeypatch: pytest.MonkeyPatch, narrow: bool
) -> None:
    """The server composes the lines while it resolves, before the three-way merge keeps
    local values: an entity with a kept edit has its lines composed again. The line of a
    course whose title a teacher fixed shows only the fields changed at the source, and
    one whose only difference is the kept edit is unchanged: as the Python writer says."""
    three = {"keep_local_edits": True}
    run(target, events, **three)
    live = [c for c in records(events)["courses"] if c["deleted_at"] is None]
    fixed, alone = live[0]["course_code"], live[1]["course_code"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    for code in (fixed, alone):
        execute(
            target,
            "UPDATE courses SET title = 'Fixed by the teacher', updated_at = :t "
            "WHERE course_code = :c",
            t=later,
            c=code,
        )
    by = copy.deepcopy(records(events))
    next(c for c in by["courses"] if c["course_code"] == fixed)["teacher"] = "Someone Else"
    changed = rebuild(by)
    if narrow:
        monkeypatch.setattr(plan, "NARROW_MIN_ROWS", 0)
    sink = Sink()
    server = _dry(target, changed, sink, **three)
    with monkeypatch.context() as m:
        m.setattr(planfile.PlanRecords, "entity", _python_entity)
        python = _dry(target, changed, sink, **three)
    assert server.status is python.status is Status.DRY_RUN
    _equal(sink.files[server.id], sink.files[python.id])
    courses = {r["key"]: r for r in _lines(sink.files[server.id]) if r["entity"] == "courses"}
    assert courses[fixed]["action"] == "update"
    assert [c["field"] for c in courses[fixed]["changes"]] == ["teacher"]
    assert courses[alone]["action"] == "unchanged"
    summary = next(s for s in server.summaries if s.entity == "courses")
    assert (summary.updated, summary.kept_local) == (1, 2)
