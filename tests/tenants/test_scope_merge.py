"""The first wall alone in the merge engine and OneRoster (docs/tenants.md): run as a
SUPERUSER, which row-level security does not bind, conflicts (listed, decided), pending
links (bound), change limits (their base), renames and a OneRoster export and import
keep to the acting school by their own `school_id` conditions. Two schools hold the same
keys, the same conflict and the same waiting link, so any query that forgot the school
would reach the other's row. The mirror of test_walls.py (RLS alone); each bite check
first shows the superuser does reach south with that scope patched out."""

from __future__ import annotations

import copy
import datetime as dt
import io
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.events import session_events
from ferry.bundle.formats.base import BundleLimits, Event
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import tenant
from ferry.errors import NotFound
from ferry.merge import MergeOptions, Status, links, run_import
from ferry.merge import conflicts as conflicts_module
from ferry.merge.conflicts import list_conflicts, resolve_conflicts
from ferry.merge.model import ChangeLimit
from ferry.merge.renames import rename_key
from ferry.oneroster.format import OneRosterBundle
from tests.merge.helpers import edited, rebuild, records, run
from tests.tenants.conftest import Tenancy
from tests.tenants.test_walls import snapshot

pytestmark = pytest.mark.postgres

REVIEW: dict[str, Any] = {"keep_local_edits": True, "conflicts": (("courses", "review"),)}
SEMESTER = "2026-fall"


def course(template: dict[str, Any], code: str, prerequisite: str | None) -> dict[str, Any]:
    rec = copy.deepcopy(template)
    rec.update(course_code=code, prerequisite_code=prerequisite, title=f"Course {code}")
    return rec


def one_course(template: dict[str, Any], code: str, prerequisite: str | None) -> list[Event]:
    return rebuild({"courses": [course(template, code, prerequisite)]}, SEMESTER)


def edit_title(app: Engine, code: str, title: str) -> None:
    """A local edit (outside any import, so its base is saved), of the acting school."""
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with app.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE courses SET title = :t, updated_at = :u "
                "WHERE course_code = :c AND school_id = :s"
            ),
            {"t": title, "u": later, "c": code, "s": tenant.school_id()},
        )


def rows(t: Tenancy, sql: str, school: int, **params: Any) -> list[tuple[Any, ...]]:
    """Rows of `sql` (with a `:s` for the school) read by the platform role."""
    with t.platform.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), {"s": school, **params})]


def oneroster(events: list[Event]) -> bytes:
    buf = io.BytesIO()
    OneRosterBundle().write(events, buf)
    return buf.getvalue()


def given_names(data: bytes) -> set[str]:
    back = list(OneRosterBundle().read(io.BytesIO(data), BundleLimits()))
    return {r["first_name"] for r in records(back).get("students", [])}


def semester(engine: Engine) -> list[Event]:
    req = SessionRequest(SEMESTER, include_deleted=True)
    return list(session_events(engine, SCHOOL, req))


def test_the_application_scope_alone_keeps_the_merge_engine_in_its_school(
    tenancy: Tenancy, source_events: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenancy
    north, south = t.schools["north"], t.schools["south"]
    su = t.platform  # the superuser: no policy binds it
    template = next(c for c in records(source_events)["courses"] if c["deleted_at"] is None)
    code = template["course_code"]
    student = records(source_events)["students"][1]["student_id"]

    # Both schools (as the app role): the same data with one name of their own, the same
    # course edited here and at the source (one conflict each), and a course whose
    # prerequisite LNK-P exists nowhere yet (one pending link each).
    for name, school in (("south", south), ("north", north)):  # south first: lower ids
        with tenant.acting_for(school):
            mine = edited(source_events, "students", 0, first_name=f"Of {name}")
            assert run(t.app, mine, **REVIEW).status is Status.COMPLETED
            edit_title(t.app, code, f"Here {name}")
            changed = edited(
                mine,
                "courses",
                records(mine)["courses"].index(template),
                title=f"Source {name}",
            )
            done = run(t.app, changed, **REVIEW)
            assert sum(s.conflicts for s in done.summaries) == 1, done.summaries
            waiting = run(t.app, one_course(template, "LNK-C", "LNK-P"))
            assert [w.kind for w in waiting.warnings] == ["pending_links"]
    south_before = snapshot(t, south)
    south_open = (
        "SELECT id, record_key, closed_by FROM pending_links WHERE school_id = :s ORDER BY id"
    )
    south_conflicts = "SELECT id, resolution FROM import_conflicts WHERE school_id = :s ORDER BY id"
    south_links, south_listed = rows(t, south_open, south), rows(t, south_conflicts, south)
    assert [r[2] for r in south_links if r[1] == "LNK-C"] == [None] and len(south_listed) == 1
    south_conflict = int(south_listed[0][0])

    # Conflicts: the check bites (unscoped, the superuser lists south's too) ...
    with tenant.acting_for(north):
        with monkeypatch.context() as m:
            m.setattr(conflicts_module, "_mine", lambda: sa.true())
            assert list_conflicts(su, SCHOOL).total == 2
        # ... and scoped, north lists its own only, and cannot decide south's.
        page = list_conflicts(su, SCHOOL)
        assert page.total == 1 and [(c.natural_key, c.local_value) for c in page.items] == [
            (code, "Here north")
        ]
        with pytest.raises(NotFound):
            resolve_conflicts(su, SCHOOL, [(south_conflict, "source")], requested_by="op")
        decided = resolve_conflicts(su, SCHOOL, [(page.items[0].id, "source")], requested_by="op")
        assert decided.status is Status.COMPLETED
    titles = "SELECT school_id, title FROM courses WHERE course_code = :c AND school_id IN (:s, :o)"
    assert dict(rows(t, titles, north, c=code, o=south)) == {
        north: "Source north",
        south: "Here south",
    }

    # Pending links: north brings LNK-P. Unscoped, its import would bind south's waiting
    # link to north's course (a dry run, so nothing stays) ...
    lnk_p = one_course(template, "LNK-P", None)
    with tenant.acting_for(north):
        with monkeypatch.context() as m:
            m.setattr(links, "_mine", lambda alias="": "TRUE")
            preview = run(su, lnk_p, dry_run=True)
        assert [(w.kind, w.count) for w in preview.warnings] == [("links_bound", 2)]
        # ... scoped, it binds north's own link only.
        bound = run(su, lnk_p)
        assert [(w.kind, w.count) for w in bound.warnings] == [("links_bound", 1)]
    linked = (
        "SELECT c.school_id, p.school_id FROM courses c LEFT JOIN courses p "
        "ON p.id = c.prerequisite_id WHERE c.course_code = 'LNK-C' AND c.school_id IN (:s, :o)"
    )
    assert sorted(rows(t, linked, north, o=south)) == sorted([(north, north), (south, None)])

    with tenant.acting_for(north):
        # Change limits: the base is north's live students, not both schools'.
        counting = (
            "SELECT count(*) FROM students WHERE deleted_at IS NULL AND school_id IN (:s, :o)"
        )
        live = rows(t, counting, north, o=north)[0][0]
        limit = ChangeLimit("students", "update", 50.0, "all")
        checked = run(su, mine, dry_run=True, change_limits=(limit,))
        assert [c.base for c in checked.limits] == [live]
        assert rows(t, counting, north, o=south)[0][0] == 2 * live  # both: twice as many

        # Renames: north renames its student; south's of the same key stays.
        renamed = rename_key(su, SCHOOL, "students", student, "RENAMED-1", requested_by="op")
        assert renamed.status is Status.COMPLETED
        assert sum(s.renamed for s in renamed.summaries) == 1

        # OneRoster export: north's semester as the superuser is north's as the app role.
        exported = oneroster(semester(su))
        assert given_names(exported) == given_names(oneroster(semester(t.app)))
        assert "Of north" in given_names(exported) and "Of south" not in given_names(exported)
        # OneRoster import: a changed student lands in north only.
        back = list(OneRosterBundle().read(io.BytesIO(exported), BundleLimits()))
        students = records(back)["students"]
        at = next(i for i, s in enumerate(students) if s["first_name"] == "Of north")
        via = edited(back, "students", at, first_name="Via OneRoster")
        imported = run_import(
            su,
            SCHOOL,
            OneRosterBundle().read(io.BytesIO(oneroster(via)), BundleLimits()),
            MergeOptions(),
            requested_by="op",
            source_sha256="sha",
        )
        assert imported.status is Status.COMPLETED, imported.error_message
        assert not any(s.created for s in imported.summaries), imported.summaries
    names = "SELECT first_name FROM students WHERE school_id = :s AND first_name LIKE 'Via%'"
    assert rows(t, names, north) == [("Via OneRoster",)]

    # Through all of it, nothing of south changed: its rows, links and conflicts.
    assert snapshot(t, south) == south_before
    assert rows(t, south_open, south) == south_links
    assert rows(t, south_conflicts, south) == south_listed
    assert rows(t, "SELECT count(*) FROM key_renames WHERE school_id = :s", south) == [(0,)]
