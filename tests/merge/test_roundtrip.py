"""Export -> import -> export gives the same records; re-importing changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Event
from ferry.bundle.stream import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.merge import Status
from tests.conftest import fresh_database
from tests.merge.helpers import bundle, checksum, comparable, counts, records, run, scalar


def _assert_round_trip(source: Engine, target: Engine) -> None:
    sent = bundle(source)
    outcome = run(target, sent)
    assert outcome.status is Status.COMPLETED, outcome.errors
    back = bundle(target)
    # Links to records outside the bundle wait in the empty database and are exported on
    # as they arrived (issue 21: links travel on): the records are identical.
    assert comparable(back) == comparable(sent)
    assert {k: len(v) for k, v in records(back).items()} == {
        k: len(v) for k, v in records(sent).items()
    }
    assert all(set(c) == {"created"} for c in counts(outcome).values())


def test_round_trip_into_an_empty_database_gives_the_same_records(
    source: Engine, target: Engine
) -> None:
    _assert_round_trip(source, target)


@pytest.mark.postgres
def test_round_trip_from_sqlite_to_postgresql(tmp_path: Path) -> None:
    with (
        fresh_database("sqlite", tmp_path) as src_url,
        fresh_database("postgres", tmp_path) as dst_url,
    ):
        src, dst = make_engine(src_url), make_engine(dst_url)
        try:
            migrate.upgrade(src)
            migrate.upgrade(dst)
            seed(src, Scale.SMALL, seed=3)
            _assert_round_trip(src, dst)
        finally:
            src.dispose()
            dst.dispose()


def test_reimport_of_the_same_bundle_is_all_unchanged_and_writes_nothing(
    events: list[Event], target: Engine
) -> None:
    run(target, events)
    before = checksum(target)
    again = run(target, events)
    assert again.status is Status.COMPLETED
    for entity, c in counts(again).items():
        assert set(c) == {"unchanged"}, entity
        assert c["unchanged"] == len(records(events)[entity])
    assert checksum(target) == before  # not one updated_at moved
    assert scalar(target, "SELECT count(*) FROM import_changes") == scalar(
        target, "SELECT count(*) FROM import_changes WHERE action = 'created'"
    )


def test_a_default_bundle_without_deleted_records_imports_into_an_empty_database(
    source: Engine, target: Engine
) -> None:
    """Soft-deleted records stay home, and so do their children: the bundle never names
    a required parent it does not carry (an enrollment of a deleted student)."""
    events = list(session_events(source, SCHOOL, SessionRequest("2026-fall")))
    outcome = run(target, events)
    assert outcome.status is Status.COMPLETED, outcome.errors[:3]
    assert outcome.total_errors == 0
    assert scalar(target, "SELECT count(*) FROM enrollments") == len(records(events)["enrollments"])
