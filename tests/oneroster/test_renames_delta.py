"""A OneRoster delta after a rename: a system that applies it to the bulk package it had
ends up with exactly the bulk package of today. A sourcedId is made of a natural key, so a
renamed student or course has new sourcedIds (its user, role, enrollments, results; a
course's class, line items...). Before, the delta wrote the renamed record under its new
sourcedId only: the receiver kept the old user beside the new one (a duplicate), and the
enrollments under it, unchanged rows, were not in the delta at all (lost under the new id).
"""

from __future__ import annotations

import datetime as dt
import io

import pytest

from ferry.bundle.events import session_events
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge.renames import rename_key
from ferry.oneroster.format import OneRosterBundle
from ferry.oneroster.validate import Package, read_package
from tests.reports.helpers import SEM, build

State = dict[str, dict[str, dict[str, str]]]  # table -> sourcedId -> row


def _package(url: str, since: dt.datetime | None = None) -> Package:
    db = make_engine(url)
    try:
        events = list(session_events(db, SCHOOL, SessionRequest(SEM, updated_since=since)))
    finally:
        db.dispose()
    buf = io.BytesIO()
    OneRosterBundle().write(events, buf)
    got = read_package(io.BytesIO(buf.getvalue()))
    assert got.errors == [], got.errors  # the validator accepts it
    return got


def _state(p: Package) -> State:
    return {t: {r.get("sourcedId"): r.values for r in p.rows(t)} for t in p.tables}


def _apply(state: State, delta: Package) -> State:
    """What a receiver does with a delta: upsert each row by sourcedId, drop tobedeleted."""
    out = {t: dict(rows) for t, rows in state.items()}
    for t in delta.tables:
        for r in delta.rows(t):
            if r.get("status") == "tobedeleted":
                out.setdefault(t, {}).pop(r.get("sourcedId"), None)
            else:
                out.setdefault(t, {})[r.get("sourcedId")] = r.values
    return out


# A delta's line items take their category, max score and dates from the grades the delta
# carries, not from every grade of the item (docs/oneroster.md, "Deltas"), so a category
# can differ from today's bulk package; the records themselves may not.
DERIVED = ("categories",)


def _active(state: State) -> dict[str, set[str]]:
    return {
        t: {i for i, r in rows.items() if r.get("status") != "tobedeleted"}
        for t, rows in state.items()
        if rows and t not in DERIVED
    }


@pytest.mark.parametrize(
    ("entity", "old", "new"), [("students", "S1", "S1X"), ("courses", "ART", "ART2")]
)
def test_a_delta_after_a_rename_brings_a_receiver_to_todays_package(
    empty_url: str, entity: str, old: str, new: str
) -> None:
    db = make_engine(empty_url)
    try:
        build(db)
        before = _package(empty_url)
        since = dt.datetime.now(dt.UTC)
        assert (
            rename_key(db, SCHOOL, entity, old, new, requested_by="t").status.value == "completed"
        )
    finally:
        db.dispose()
    delta = _package(empty_url, since)
    after = _package(empty_url)
    retired = {r.get("identifier") for r in delta.rows("users") if r.get("status") == "tobedeleted"}
    if entity == "students":
        assert retired == {old}  # the old user is said to be gone
    applied = _active(_apply(_state(before), delta))
    assert applied == _active(_state(after))
    assert applied != _active(_state(before))  # the rename did change sourcedIds
