"""Staging beside the merge (ferry.merge.pipeline): sections in dependency order, one each;
the staging tables do not outlive a run; a killed run's leftovers do not matter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.datasets.school import SCHOOL
from ferry.errors import InvalidArgument
from ferry.merge.model import MergeOptions
from ferry.merge.pipeline import Staging
from ferry.merge.run import run_import
from tests.merge.helpers import checksum, counts, records, run


def _staging_tables(engine: Engine) -> list[str]:
    if engine.dialect.name == "sqlite":
        return []
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE tablename LIKE 'ferry\\_stage\\_%'")
            ).scalars()
        )


def _sections(events: list[Event], order: list[str]) -> list[Event]:
    """The bundle's batches, sections in `order` (entity names, repeats allowed: the
    entity's records are then split between its appearances)."""
    by = records(events)
    parts: dict[str, list[list[dict[str, object]]]] = {}
    for name in by:
        n = order.count(name)
        size = -(-len(by[name]) // n)
        parts[name] = [by[name][i * size : (i + 1) * size] for i in range(n)]
    out: list[Event] = [e for e in events if isinstance(e, Header)]
    for name in order:
        out.append(Batch(name, parts[name].pop(0)))
    out += [e for e in events if isinstance(e, Trailer)]
    return out


def test_staging_tables_are_dropped_after_a_run_good_or_bad(
    events: list[Event], target: Engine
) -> None:
    assert run(target, events).status.value == "completed"
    assert _staging_tables(target) == []
    order = [e.entity for e in events if isinstance(e, Batch)]
    names = list(dict.fromkeys(order))
    twice = [*names, names[-1], names[0]]
    before = checksum(target)
    with pytest.raises(InvalidArgument):
        run(target, _sections(events, twice))
    assert _staging_tables(target) == []
    assert checksum(target) == before


def test_an_entity_in_two_places_is_refused_and_nothing_changes(
    events: list[Event], target: Engine
) -> None:
    names = list(dict.fromkeys(e.entity for e in events if isinstance(e, Batch)))
    order = [names[0], names[1], names[0], *names[2:]]
    with pytest.raises(InvalidArgument, match=f"{names[0]} records appear in two places"):
        run(target, _sections(events, order))
    assert all(v == 0 for v in _counts(target).values())


def test_parents_after_their_children_are_refused_or_merged_never_half(
    events: list[Event], target: Engine
) -> None:
    names = list(dict.fromkeys(e.entity for e in events if isinstance(e, Batch)))
    # courses last: their children (enrollments...) come first
    order = [*names[1:], names[0]]
    try:
        outcome = run(target, _sections(events, order))
    except InvalidArgument as e:
        assert "dependency order" in str(e)
        assert all(v == 0 for v in _counts(target).values())
    else:  # staged completely before the merge needed it (SQLite): merged whole
        assert counts(outcome)["courses"]["created"] == len(records(events)["courses"])


# SQLite stages in TEMP tables, which die with their connection: PostgreSQL only.
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_killed_runs_staging_tables_do_not_matter(events: list[Event], target: Engine) -> None:
    with target.begin() as conn:  # what a killed run leaves: committed junk
        conn.exec_driver_sql("CREATE UNLOGGED TABLE ferry_stage_school_courses (junk INT)")
        conn.exec_driver_sql("INSERT INTO ferry_stage_school_courses VALUES (1)")
    outcome = run(target, events)
    assert outcome.status.value == "completed"
    assert counts(outcome)["courses"]["created"] == len(records(events)["courses"])
    assert _staging_tables(target) == []


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one())
            for t in ("courses", "students", "enrollments", "grades")
        }


def _slow_after_first_batch(events: list[Event], pause: float) -> Iterator[Event]:
    """The bundle as a slow upload delivers it: a pause after its first batch."""
    first = True
    for e in events:
        yield e
        if first and isinstance(e, Batch):
            first = False
            time.sleep(pause)


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_run_that_just_committed_never_drops_the_next_runs_tables(
    events: list[Event], target: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import lock ends with the import's transaction, before the run drops its
    staging tables. A run starting in between used to have its freshly created tables
    dropped under it (UndefinedTable, INTERNAL; seen in CI after a cancelled upload). Now
    the tables belong to whoever holds the staging lock until it has dropped them."""
    real = Staging._finish
    closing = threading.Event()

    def slow_first_finish(self: Staging) -> None:
        if not closing.is_set():
            closing.set()
            time.sleep(1.0)  # the first run is slow to clean up after its commit
        real(self)

    monkeypatch.setattr(Staging, "_finish", slow_first_finish)
    first: list[object] = []
    a = threading.Thread(target=lambda: first.append(run(target, events)))
    a.start()
    assert closing.wait(60), "the first run never reached its clean-up"
    second = run_import(target, SCHOOL, _slow_after_first_batch(events, 1.5),
                        MergeOptions(), requested_by="tester", source_sha256="other")  # fmt: skip
    a.join(60)
    assert [o.status.value for o in first] == ["completed"]  # type: ignore[attr-defined]
    assert second.status.value == "completed"
    assert _staging_tables(target) == []
