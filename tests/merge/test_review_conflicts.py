"""Conflicts left for review (imports.conflicts: review): listed with both values, decided
by a person (local or source) as an import of its own, audited and undoable; each
decided once, a wrong id named. Values are checked with plain SQL."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.errors import FailedPrecondition, InvalidArgument, NotFound
from ferry.merge import Status, get_import, undo_import
from ferry.merge.conflicts import list_conflicts, resolve_conflicts
from tests.merge.helpers import execute, rebuild, records, run, scalar

REVIEW = {"keep_local_edits": True, "conflicts": (("courses", "review"),)}


def _edit_here(target: Engine, code: str, **values: Any) -> None:
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    sets = ", ".join(f"{k} = :{k}" for k in values)
    execute(
        target,
        f"UPDATE courses SET {sets}, updated_at = :t WHERE course_code = :c",
        t=later if target.dialect.name != "sqlite" else later.strftime("%Y-%m-%d %H:%M:%S.%f"),
        c=code,
        **values,
    )


def _title(target: Engine, code: str) -> Any:
    return scalar(target, "SELECT title FROM courses WHERE course_code = :c", c=code)


def _open(target: Engine) -> int:
    return int(scalar(target, "SELECT count(*) FROM import_conflicts WHERE resolution IS NULL"))


def _two_conflicts(events: list[Event], target: Engine) -> tuple[str, str, list[Event]]:
    """Two courses whose title changed here and at the source."""
    run(target, events, **REVIEW)
    live = [c for c in records(events)["courses"] if c["deleted_at"] is None][:2]
    a, b = live[0]["course_code"], live[1]["course_code"]
    _edit_here(target, a, title="Here A")
    _edit_here(target, b, title="Here B")
    by = copy.deepcopy(records(events))
    for c in by["courses"]:
        if c["course_code"] in (a, b):
            c["title"] = f"Source {c['course_code']}"
    return a, b, rebuild(by)


def test_review_conflicts_are_listed_and_decided_one_by_one_then_undone(
    events: list[Event], target: Engine
) -> None:
    a, b, changed = _two_conflicts(events, target)
    preview = run(target, changed, dry_run=True, **REVIEW)
    assert preview.status is Status.DRY_RUN
    assert _open(target) == 0  # a preview lists nothing
    done = run(target, changed, **REVIEW)
    page = list_conflicts(target, SCHOOL)
    assert page.total == _open(target) == 2
    by_key = {c.natural_key: c for c in page.items}
    assert (by_key[a].field, by_key[a].local_value, by_key[a].source_value) == (
        "title",
        "Here A",
        f"Source {a}",
    )
    assert by_key[a].import_id == done.id
    # The local values stay until a person decides.
    assert (_title(target, a), _title(target, b)) == ("Here A", "Here B")

    resolved = resolve_conflicts(
        target, SCHOOL, [(by_key[a].id, "source"), (by_key[b].id, "local")], requested_by="op"
    )
    assert resolved.status is Status.COMPLETED
    assert (_title(target, a), _title(target, b)) == (f"Source {a}", "Here B")
    assert _open(target) == 0 and list_conflicts(target, SCHOOL).total == 0
    # Audited: an import of its own, by whom, what.
    record = get_import(target, resolved.id)
    assert record.requested_by == "op"
    (summary,) = record.summaries
    assert (summary.entity, summary.updated, summary.unchanged) == ("courses", 1, 1)
    assert (
        scalar(
            target,
            "SELECT count(*) FROM import_conflicts "
            "WHERE resolved_import_id = :i AND resolved_by = 'op'",
            i=resolved.id,
        )
        == 2
    )

    # Undo puts the local value back and opens both conflicts again.
    undo_import(target, SCHOOL, resolved.id)
    assert _title(target, a) == "Here A"
    assert _open(target) == 2
    # The next import of the same bundle lists them once, not twice (superseded).
    run(target, changed, **REVIEW)
    assert _open(target) == 2
    assert list_conflicts(target, SCHOOL).total == 2


def test_a_resolved_unknown_or_stale_conflict_is_named_and_nothing_changes(
    events: list[Event], target: Engine
) -> None:
    a, b, changed = _two_conflicts(events, target)
    run(target, changed, **REVIEW)
    ids = {c.natural_key: c.id for c in list_conflicts(target, SCHOOL).items}
    resolve_conflicts(target, SCHOOL, [(ids[a], "local")], requested_by="op")
    imports_before = scalar(target, "SELECT count(*) FROM imports")
    with pytest.raises(FailedPrecondition) as resolved:
        resolve_conflicts(
            target, SCHOOL, [(ids[b], "source"), (ids[a], "source")], requested_by="op"
        )
    assert f"conflict {ids[a]} was resolved already" in resolved.value.message
    with pytest.raises(NotFound) as unknown:
        resolve_conflicts(
            target, SCHOOL, [(ids[b], "source"), (99999, "source")], requested_by="op"
        )
    assert "conflict 99999 does not exist" in unknown.value.message
    assert unknown.value.metadata == {"id": "99999"}
    # Edited here again since it was listed: stale, list again.
    _edit_here(target, b, title="Here B, again")
    with pytest.raises(FailedPrecondition) as stale:
        resolve_conflicts(target, SCHOOL, [(ids[b], "source")], requested_by="op")
    assert f"conflict {ids[b]}" in stale.value.message
    assert _title(target, b) == "Here B, again"
    assert scalar(target, "SELECT count(*) FROM imports") == imports_before
    assert _open(target) == 1
    for bad in ([], [(ids[b], "both")], [(ids[b], "local"), (ids[b], "source")], [(0, "local")]):
        with pytest.raises(InvalidArgument):
            resolve_conflicts(target, SCHOOL, bad, requested_by="op")


def test_undoing_the_import_that_listed_conflicts_removes_them(
    events: list[Event], target: Engine
) -> None:
    a, _, changed = _two_conflicts(events, target)
    done = run(target, changed, **REVIEW)
    assert _open(target) == 2
    undo_import(target, SCHOOL, done.id)
    assert _open(target) == 0
    assert _title(target, a) == "Here A"


def test_numbers_and_dates_are_decided_typed_and_the_list_pages(
    events: list[Event], target: Engine
) -> None:
    rules = {"keep_local_edits": True, "conflicts": (("courses", "review"), ("students", "review"))}
    run(target, events, **rules)
    by = copy.deepcopy(records(events))
    course = next(c for c in by["courses"] if c["deleted_at"] is None)
    student = next(s for s in by["students"] if s["deleted_at"] is None and s["date_of_birth"])
    code, sid = course["course_code"], student["student_id"]
    _edit_here(target, code, credits=course["credits"] + 7)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    execute(
        target,
        "UPDATE students SET date_of_birth = :d, updated_at = :t WHERE student_id = :s",
        d=dt.date(2001, 2, 3),
        t=later if target.dialect.name != "sqlite" else later.strftime("%Y-%m-%d %H:%M:%S.%f"),
        s=sid,
    )
    course["credits"] = course["credits"] + 9
    student["date_of_birth"] = "1999-12-31"
    run(target, rebuild(by), **rules)
    first = list_conflicts(target, SCHOOL, page_size=1)
    assert first.total == 2 and len(first.items) == 1 and first.next_token
    second = list_conflicts(target, SCHOOL, page_size=1, page_token=first.next_token)
    assert len(second.items) == 1 and not second.next_token
    assert list_conflicts(target, SCHOOL, entity="students").total == 1
    with pytest.raises(InvalidArgument):
        list_conflicts(target, SCHOOL, page_token="not-a-token")
    items = {c.entity: c for c in first.items + second.items}
    assert items["courses"].local_value == course["credits"] - 2
    assert items["students"].source_value == "1999-12-31"
    resolve_conflicts(
        target,
        SCHOOL,
        [(items["courses"].id, "source"), (items["students"].id, "source")],
        requested_by="op",
    )
    assert (
        int(scalar(target, "SELECT credits FROM courses WHERE course_code = :c", c=code))
        == (course["credits"])
    )
    born = scalar(target, "SELECT date_of_birth FROM students WHERE student_id = :s", s=sid)
    assert str(born)[:10] == "1999-12-31"
