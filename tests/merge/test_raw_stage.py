"""Records staged unparsed (RawBatch, the json fast path) merge exactly like parsed ones."""

from __future__ import annotations

import copy
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats import runs
from ferry.bundle.formats.base import Batch, BundleLimits, Event, RawBatch
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import field_rules
from ferry.merge.shape import build_shapes
from ferry.merge.stagetables import Stager, create_tables
from tests.conftest import migrated_database
from tests.merge.helpers import checksum, counts, records, run


@pytest.fixture
def second_target(backend: str, tmp_path: Path) -> Iterator[Engine]:
    with migrated_database(backend, tmp_path) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _json(events: list[Event]) -> bytes:
    out = io.BytesIO()
    JsonBundle().write(iter(events), out)
    return out.getvalue()


def test_unparsed_runs_merge_like_parsed_records(
    events: list[Event], target: Engine, second_target: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "RUN_BYTES", 4096)  # many runs per entity
    # A title too long for its column: refused per record, on both paths, the same way.
    long_title = "x" * 500
    changed = copy.deepcopy(events)
    first = next(e for e in changed if isinstance(e, Batch) and e.entity == "courses")
    first.records[3]["title"] = long_title
    data = _json(changed)
    limits = BundleLimits()
    rules = field_rules(SCHOOL, target.dialect)
    raw = list(JsonBundle().read_raw(io.BytesIO(data), limits, rules))
    assert sum(e.count for e in raw if isinstance(e, RawBatch)) > len(records(events)["grades"])
    parsed = list(JsonBundle().read(io.BytesIO(data), limits))

    one = run(target, raw, on_error="skip_invalid")
    two = run(second_target, parsed, on_error="skip_invalid")
    assert counts(one) == counts(two)
    assert counts(one)["courses"]["errors"] == 1
    assert [(e.entity, e.natural_key, e.field, e.reason, e.position) for e in one.errors] == [
        (e.entity, e.natural_key, e.field, e.reason, e.position) for e in two.errors
    ]
    assert checksum(target) == checksum(second_target)

    again = run(target, list(JsonBundle().read_raw(io.BytesIO(data), limits, rules)))
    assert {s.entity: s.unchanged for s in again.summaries} == {
        s.entity: s.created for s in one.summaries
    }


# Values a raw run may carry that a parser could get wrong: text needing escapes, any
# plane of Unicode, floats of many digits, an instant with an offset and one without a
# fraction, nulls. Each record stays canonical, so the run takes the raw path.
_TEXT = 'Quotes " and \\ backslash, tab\t, Ελληνικά, 漢字, 🚀'
_TRICKY = {
    "courses": {
        "title": _TEXT,
        "created_at": "2026-10-06T08:44:28+02:00",
        "updated_at": "2026-10-06T08:44:28.000001Z",
    },
    "grades": {"comment": _TEXT, "score": 3.3000000000000003},
}


# PostgreSQL stages raw runs from their rows; SQLite parses them in Python.
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
def test_decoded_rows_stage_exactly_what_the_json_stages(
    events: list[Event], target: Engine, backend: str
) -> None:
    """Every raw run staged twice, once from its decoded rows (COPY) and once from its
    JSON (json_populate_recordset), into two staging tables per entity: the tables hold
    the same rows (compared as text)."""
    assert backend == "postgres"
    changed = copy.deepcopy(events)
    for entity, values in _TRICKY.items():
        next(e for e in changed if isinstance(e, Batch) and e.entity == entity).records[0].update(
            values
        )
    by = records(changed)
    data = _json(changed)
    rules = field_rules(SCHOOL, target.dialect)
    raw = list(JsonBundle().read_raw(io.BytesIO(data), BundleLimits(), rules))
    batches = [e for e in raw if isinstance(e, RawBatch)]
    assert all(b.rows is not None for b in batches)
    assert {b.entity for b in batches} == {n for n, r in by.items() if r}  # all raw
    shapes = build_shapes(SCHOOL, target.dialect)
    copied = {n: replace(s, stage_table=f"h_copied_{n}") for n, s in shapes.items()}
    parsed = {n: replace(s, stage_table=f"h_parsed_{n}") for n, s in shapes.items()}
    with target.connect() as conn:
        create_tables(conn, [*copied.values(), *parsed.values()], False)
        one, two = Stager(conn, copied, False), Stager(conn, parsed, False)
        for b in batches:
            one.stage_raw(b, None)
            two.stage_raw(RawBatch(b.entity, b.body, b.count), None)  # no rows: JSON
        for n in shapes:
            a, z = copied[n].stage, parsed[n].stage
            total = conn.exec_driver_sql(f"SELECT count(*) FROM {a}").scalar_one()
            assert total == len(by.get(n, [])), n
            for x, y in ((a, z), (z, a)):
                differ = conn.exec_driver_sql(
                    f"SELECT count(*) FROM (SELECT t::text FROM {x} t "
                    f"EXCEPT ALL SELECT t::text FROM {y} t) d"
                ).scalar_one()
                assert differ == 0, n
        course = conn.exec_driver_sql(
            f"SELECT title, created_at, updated_at FROM {copied['courses'].stage} WHERE pos = 1"
        ).one()
        grade = conn.exec_driver_sql(
            f"SELECT comment, score FROM {copied['grades'].stage} WHERE pos = 1"
        ).one()
        assert course[0] == grade[0] == _TEXT
        assert grade[1] == _TRICKY["grades"]["score"]
        wrote = _TRICKY["courses"]
        assert [course[1], course[2]] == [
            dt.datetime.fromisoformat(wrote[f].replace("Z", "+00:00"))
            for f in ("created_at", "updated_at")
        ]
        conn.rollback()
