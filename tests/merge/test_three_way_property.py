"""Two installations exchanging delta bundles both ways, with random local edits on each
(issue 29), on both backends, keep_local_edits on:

- policy `local`: an import never overwrites a field edited locally (the oracle tracks
  the edits made on each side, and forgets one once an import brought that very value);
- policy `source`: once both sides have synced with nothing edited in between, they hold
  the same data;
- either way no record is duplicated or orphaned (the same keys as at the start, every
  child's parent present).

The oracle is plain SQL reads of the edited fields and of every record's key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.bundle.events import session_events
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import Status
from tests.conftest import migrated_database
from tests.merge.helpers import SEMESTER, bundle, run

# (entity, field, key fields): the fields people edit.
EDITABLE = [
    ("courses", "title", "course_code"),
    ("courses", "teacher", "course_code"),
    ("students", "first_name", "student_id"),
]
VALUES = ["Alpha", "Beta", "Gamma"]
EDIT = st.tuples(
    st.just("edit"),
    st.sampled_from(["a", "b"]),
    st.integers(0, len(EDITABLE) - 1),
    st.integers(0, 1),
    st.sampled_from(VALUES),
)
SYNC = st.tuples(st.just("sync"), st.sampled_from(["ab", "ba"]))
STEPS = st.lists(st.one_of(EDIT, SYNC), min_size=3, max_size=10)
OTHER = {"a": "b", "b": "a"}


@pytest.fixture
def second(backend: str, tmp_path: Path) -> Iterator[Engine]:
    with migrated_database(backend, tmp_path) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _wipe(engine: Engine) -> None:
    with engine.begin() as conn:
        for name in ("import_changes", "import_rejects", "pending_links"):
            conn.execute(sa.text(f"DELETE FROM {name}"))
        conn.execute(sa.text("DELETE FROM imports"))
        for entity in SCHOOL.in_order():
            for ref in entity.references:
                if ref.parent == entity.name:  # self-references first: any order then
                    conn.execute(sa.text(f"UPDATE {entity.table.name} SET {ref.column} = NULL"))
        for entity in reversed(SCHOOL.in_order()):
            conn.execute(sa.text(f"DELETE FROM {entity.table.name}"))
        # Last: the UPDATEs above saved bases (they are edits), of ids SQLite reuses.
        conn.execute(sa.text("DELETE FROM import_bases"))


def _keys(engine: Engine) -> list[tuple[str, int, int]]:
    """Per entity: rows, distinct natural keys among them, rows whose parent is missing."""
    out = []
    with engine.connect() as conn:
        for e in SCHOOL.in_order():
            table = e.table.name
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            orphans = 0
            for ref in e.references:
                parent = SCHOOL.entity(ref.parent).table.name
                orphans += conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM {table} t WHERE t.{ref.column} IS NOT NULL "
                        f"AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = t.{ref.column})"
                    )
                ).scalar_one()
            out.append((table, int(rows), int(orphans)))
    return out


def _value(engine: Engine, entity: str, field: str, key: str, value: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(f"SELECT {field} FROM {entity} WHERE {key} = :k"), {"k": value}
        ).scalar_one()


def _edited_fields(engine: Engine) -> dict[tuple[str, str, str], Any]:
    out = {}
    with engine.connect() as conn:
        for entity, field, key in EDITABLE:
            for k, v in conn.execute(sa.text(f"SELECT {key}, {field} FROM {entity}")):
                out[(entity, field, k)] = v
    return out


def _keys_of(engine: Engine, entity: str, key: str) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {key} FROM {entity} WHERE deleted_at IS NULL ORDER BY {key}")
        )
        return [r[0] for r in rows]


def _stamp(engine: Engine, when: dt.datetime) -> Any:
    return when.strftime("%Y-%m-%d %H:%M:%S.%f") if engine.dialect.name == "sqlite" else when


# make test: the explicit example below and 3 drawn ones per backend and policy (each
# example re-imports the demo semester on both sides); make test-long draws 12.
@pytest.mark.parametrize("examples", [3, pytest.param(12, marks=pytest.mark.long)])
@pytest.mark.parametrize("policy", ["local", "source"])
def test_two_installations_exchanging_deltas_keep_local_edits_or_converge(
    source: Engine, target: Engine, second: Engine, policy: str, examples: int
) -> None:
    start = bundle(source)
    sides = {"a": target, "b": second}
    options = {"keep_local_edits": True, "conflicts": (("*", policy),)}

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(steps=STEPS)
    # One side edits a course's title, the other its teacher, then both sync: a two-way
    # merge would overwrite the title with the other side's old one.
    @example(
        steps=[
            ("edit", "a", 0, 0, "Alpha"),
            ("edit", "b", 1, 0, "Beta"),
            ("sync", "ba"),
            ("sync", "ab"),
        ]
    )
    def check(steps: list[tuple[Any, ...]]) -> None:
        for engine in sides.values():
            _wipe(engine)
            assert run(engine, start, **options).status is Status.COMPLETED
        shape = _keys(target)
        assert shape == _keys(second)
        since = {"ab": dt.datetime.now(dt.UTC), "ba": dt.datetime.now(dt.UTC)}
        edited: dict[str, dict[tuple[str, str, str], str]] = {"a": {}, "b": {}}
        for step in steps:
            if step[0] == "edit":
                _, side, which, index, value = step
                entity, field, key = EDITABLE[which]
                engine = sides[side]
                keys = _keys_of(engine, entity, key)
                k = keys[index % len(keys)]
                with engine.begin() as conn:
                    conn.execute(
                        sa.text(
                            f"UPDATE {entity} SET {field} = :v, updated_at = :t WHERE {key} = :k"
                        ),
                        {"v": value, "t": _stamp(engine, dt.datetime.now(dt.UTC)), "k": k},
                    )
                edited[side][(entity, field, k)] = value
                continue
            direction = step[1]
            src, dst = sides[direction[0]], sides[direction[1]]
            taken = dt.datetime.now(dt.UTC)
            delta = list(
                session_events(
                    src,
                    SCHOOL,
                    SessionRequest(
                        SEMESTER,
                        include_deleted=True,
                        updated_since=since[direction] - dt.timedelta(seconds=1),
                    ),
                )
            )
            since[direction] = taken
            sent = _edited_fields(src)
            out = run(dst, delta, **options)
            assert out.status is Status.COMPLETED, out.errors[:3]
            here = edited[direction[1]]
            now = _edited_fields(dst)
            if policy == "local":
                for spot, value in here.items():
                    assert now[spot] == value, f"local edit {spot} overwritten"
            # An edit the other side now holds too is no longer a local edit.
            for spot in [s for s, v in here.items() if sent.get(s) == v]:
                del here[spot]
            assert _keys(dst) == shape, "no record duplicated or orphaned"
        if policy == "source":
            # Sync both ways with nothing edited in between: the same data.
            for direction in ("ab", "ba", "ab"):
                src, dst = sides[direction[0]], sides[direction[1]]
                delta = list(
                    session_events(
                        src,
                        SCHOOL,
                        SessionRequest(
                            SEMESTER,
                            include_deleted=True,
                            updated_since=since[direction] - dt.timedelta(seconds=1),
                        ),
                    )
                )
                since[direction] = dt.datetime.now(dt.UTC)
                assert run(dst, delta, **options).status is Status.COMPLETED
            assert _edited_fields(target) == _edited_fields(second), "converged"
        for engine in sides.values():
            assert _keys(engine) == shape

    check()
