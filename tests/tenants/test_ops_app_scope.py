"""The first wall alone (docs/tenants.md): run as a SUPERUSER, which row-level security
does not bind, the export job store and its entity exports, the retention cleanup, bundle
reading, the import history and undo still keep to the acting school, by their own
`school_id` conditions. The mirror of test_walls.py (RLS alone); the bundle check first
shows the superuser does see the other school's rows with the application scope patched
out, so the test bites."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Event
from ferry.bundle.scan import SessionRequest
from ferry.bundle.semesters import list_semesters
from ferry.datasets.school import SCHOOL
from ferry.db import tenant
from ferry.errors import NotFound
from ferry.export_jobs import store
from ferry.export_jobs.cleanup import cleanup, cleanup_every_school
from ferry.export_jobs.query import ExportRequest, plan_export
from ferry.merge import Status, get_import, list_imports, undo_import
from ferry.storage.local import LocalStorage
from tests.merge.helpers import comparable, edited, records, run
from tests.tenants.conftest import Tenancy
from tests.tenants.test_walls import snapshot

pytestmark = pytest.mark.postgres


def names(events: list[Event]) -> set[str]:
    return {r["first_name"] for r in records(events).get("students", [])}


def whole(engine: sa.engine.Engine) -> list[Event]:
    req = SessionRequest("", include_deleted=True, scope="school")
    return list(session_events(engine, SCHOOL, req))


def test_the_application_scope_alone_keeps_schools_apart(
    tenancy: Tenancy, source_events: list[Event], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    t = tenancy
    north, south = t.schools["north"], t.schools["south"]
    su = t.platform  # the superuser: no policy binds it
    imports = {}
    for code, school in (("north", north), ("south", south)):
        with tenant.acting_for(school):
            outcome = run(t.app, edited(source_events, "students", 0, first_name=f"Of {code}"))
            assert outcome.status is Status.COMPLETED
            imports[code] = outcome.id
    with tenant.acting_for(north):
        own = whole(t.app)  # what north's bundle is, read by the app role (both walls)

    # The check bites: without the application scope the superuser reads both schools.
    with monkeypatch.context() as m:
        m.setattr(tenant, "scope_sql", lambda alias: "TRUE")
        with tenant.acting_for(north):
            assert {"Of north", "Of south"} <= names(whole(su))

    with tenant.acting_for(north):
        # Bundle reading: a school bundle and a semester bundle hold north's rows only.
        mine = whole(su)
        assert comparable(mine) == comparable(own)
        assert "Of south" not in names(mine) and mine[0].metadata.school == "north"  # type: ignore[attr-defined]
        semester = list(
            session_events(su, SCHOOL, SessionRequest("2026-fall", include_deleted=True))
        )
        assert "Of south" not in names(semester) and "Of north" in names(semester)
        assert list_semesters(su, SCHOOL, ("students",)) == list_semesters(
            t.app, SCHOOL, ("students",)
        )
        # An entity export (the job's query): north's students, with their names.
        with su.connect() as conn:
            plan = plan_export(conn, SCHOOL, ExportRequest("students", include_deleted=True), 10**6)
            exported = conn.execute(plan.rows).mappings().all()
            assert conn.execute(plan.count).scalar_one() == len(exported)
        assert len(exported) == len(records(source_events)["students"])
        assert {"Of north"} == {r["first_name"] for r in exported} & {"Of north", "Of south"}
        # Import history: the other school's import is no import at all.
        assert [o.id for o in list_imports(su, 50, "").items] == [imports["north"]]
        with pytest.raises(NotFound):
            get_import(su, imports["south"])
        with pytest.raises(NotFound):
            undo_import(su, SCHOOL, imports["south"])
    south_before = snapshot(t, south)

    # Undo as the superuser takes back north's import and nothing of south's.
    with tenant.acting_for(north):
        assert undo_import(su, SCHOOL, imports["north"]).status is Status.UNDONE
    assert snapshot(t, south) == south_before
    with t.platform.connect() as conn:
        left = dict(
            conn.execute(sa.text("SELECT school_id, count(*) FROM students GROUP BY 1")).all()
        )
    assert north not in left and left[south] == len(records(source_events)["students"])

    # Export jobs: the store and the retention cleanup.
    storage = LocalStorage.at(tmp_path / "exports", tmp_path / "archive")
    jobs = {}
    for code, school in (("north", north), ("south", south)):
        with tenant.acting_for(school):
            job, _ = store.create_job(
                t.app, store.NewJob("students", "csv", "school", idempotency_key="k")
            )
            with storage.writer(job.storage_key) as f:
                f.write(code.encode())
            jobs[code] = job
    assert jobs["north"].storage_key.startswith("north--")  # a school's files by prefix
    assert jobs["south"].storage_key.startswith("south--")
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=400)
    with su.begin() as conn:
        conn.execute(
            sa.text("UPDATE export_jobs SET status = 'completed', finished_at = :t"),
            {"t": long_ago},
        )
    with tenant.acting_for(north):
        assert [j.id for j in store.list_jobs(su, 50).items] == [jobs["north"].id]
        with pytest.raises(NotFound):
            store.get_job(su, jobs["south"].id)
        with pytest.raises(NotFound):
            store.request_cancel(su, jobs["south"].id)
        # The same idempotency key in another school is another job.
        again, created = store.create_job(
            su, store.NewJob("students", "csv", "school", idempotency_key="k")
        )
        assert not created and again.id == jobs["north"].id
        removed = cleanup(su, storage, 30, 30)
    assert removed.jobs_removed == 1 and removed.files_deleted == 1
    assert storage.size(jobs["north"].storage_key) is None
    assert storage.size(jobs["south"].storage_key) == len(b"south")
    with t.platform.connect() as conn:
        assert conn.execute(sa.text("SELECT id FROM export_jobs")).scalars().all() == [
            jobs["south"].id
        ]

    # The platform's retention goes school by school, each its own files.
    results = cleanup_every_school(su, storage, 30)
    assert {c: r.jobs_removed for c, r in results.items()} == {
        "default": 0,
        "north": 0,
        "south": 1,
    }
    assert storage.size(jobs["south"].storage_key) is None
