"""One statement for the versions and the touched semesters (PostgreSQL): an import, a
conflict resolution and an undo bump the same report versions and recount the same
semesters as bump_for_import followed by touched_by did, read from the import's changes
once instead of three times (issue 27: 17 of a 1M-record import's 83 s were the same
CTE evaluated three times)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.formats.base import Batch
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.errors import NotFound
from ferry.merge import undo_import
from ferry.reports.versions import bump_and_touched, bump_for_import, touched_by
from tests.merge.helpers import bundle, records, run
from tests.reports.helpers import SEM

pytestmark = pytest.mark.postgres


def _versions(conn: Connection) -> dict[tuple[str, str], int]:
    rows = conn.execute(sa.text("SELECT kind, key, version FROM report_versions"))
    return {(r[0], r[1]): r[2] for r in rows}


NEW = "2027-spring"


def _records(db: Engine) -> dict[str, list[dict[str, Any]]]:
    """Both semesters' records (a semester left without courses has none)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for sem in (SEM, NEW):
        try:
            got = records(bundle(db, sem))
        except NotFound:
            continue
        for k, v in got.items():
            out.setdefault(k, []).extend(v)
    return out


def _both_ways(db: Engine, import_id: str, created: bool) -> None:
    """The two paths, each in a transaction rolled back: the same bumps, the same
    semesters, the same counts."""
    with db.connect() as conn:
        before = _versions(conn)
        old = bump_for_import(conn, import_id, created), touched_by(conn, SCHOOL, import_id)
        old_versions = _versions(conn)
        conn.rollback()
        assert _versions(conn) == before
        new = bump_and_touched(conn, SCHOOL, import_id, created)
        new_versions = _versions(conn)
        conn.rollback()
    assert new_versions == old_versions
    assert new[1] == old[1]
    assert new[0][0] == old[0][0]  # students bumped
    assert new[0][1] == len(old[1] or ())  # semesters bumped: those touched


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_one_statement_bumps_what_the_two_calls_bumped(school_url: str) -> None:
    db = make_engine(school_url)
    rng = random.Random(27)
    done: list[str] = []
    try:
        for _ in range(10):
            data = _records(db)
            step = rng.choice(["move", "grades", "rename", "undo"])
            if step == "undo" and done:
                iid = done.pop()
                for created in (False, True):
                    _both_ways(db, iid, created)
                undo_import(db, SCHOOL, iid, force=True)
                continue
            events: list[Batch]
            entity = ""
            if step == "grades" and data.get("grades"):
                picked = rng.sample(data["grades"], k=min(3, len(data["grades"])))
                events = [Batch("grades", [{**g, "score": rng.randint(0, 100)} for g in picked])]
                entity = "grades"
            elif step == "rename" and data.get("students"):
                s: dict[str, Any] = rng.choice(data["students"])
                events = [Batch("students", [{**s, "first_name": s["first_name"] + "x"}])]
                entity = "students"
            else:
                c = rng.choice(data["courses"])
                to = NEW if c["semester"] == SEM else SEM
                events = [Batch("courses", [{**c, "semester": to}])]
                entity = "courses"
            outcome = run(db, events, entity=entity, strategy="update")
            assert outcome.status.value == "completed", outcome.errors[:3]
            for created in (False, True):
                _both_ways(db, outcome.id, created)
            done.append(outcome.id)
        # A whole semester's import, everything created: students are not bumped, their
        # children are; the semester is.
        held = _records(db)
        everything = [
            Batch(e.name, list({json.dumps(r, sort_keys=True, default=str): r
                                for r in held.get(e.name, [])}.values()))
            for e in SCHOOL.in_order()
        ]  # fmt: skip
        lone = {**everything[1].records[0], "student_id": "LONE"}  # no enrolment
        everything[1] = Batch("students", [*everything[1].records, lone])
        with db.begin() as conn:
            conn.execute(sa.text("DELETE FROM report_versions"))
            for e in reversed(SCHOOL.in_order()):
                conn.execute(sa.text(f"DELETE FROM {e.table.name}"))
        full = run(db, everything)
        assert full.status.value == "completed", full.errors[:3]
        for created in (False, True):
            _both_ways(db, full.id, created)
    finally:
        db.dispose()
