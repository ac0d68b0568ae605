"""Bounds from the dataset spec (issue 21, item 5): every number has a finite range and
every date a plausible one; a value outside is a record error naming entity, key, field
and the allowed range, and nothing is changed. A weight of 1e308 (which made every report
of its course fail) can no longer be stored, through any reader."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Batch, BundleLimits, Event, RawBatch
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.merge import Status
from ferry.merge.stagetables import field_rules
from tests.merge.helpers import checksum, records, run
from tests.merge.test_partial import _csv_events


def _changed(events: list[Event], entity: str, **changes: Any) -> tuple[list[Event], str]:
    """A copy of the bundle with the first record of `entity` changed (counts kept)."""
    out = copy.deepcopy(events)
    for e in out:
        if isinstance(e, Batch) and e.entity == entity:
            e.records[0].update(changes)
            rec = e.records[0]
            return out, "/".join(str(rec[k]) for k in SCHOOL.entity(entity).natural_key)
    raise AssertionError(entity)


def _through_json(events: list[Event], engine: Engine) -> list[Event]:
    """The bundle written as a json file and read back the way an import reads it (runs
    of plain records stay raw JSON on PostgreSQL)."""
    buf = io.BytesIO()
    JsonBundle().write(events, buf)
    buf.seek(0)
    rules = field_rules(SCHOOL, engine.dialect)
    return list(JsonBundle().read_raw(buf, BundleLimits(), rules))


CASES = [
    ("grades", "weight", 1e308, "0.0 to 1000000.0"),
    ("grades", "score", -1e300, "-1000000.0 to 1000000.0"),
    ("grades", "max_score", 2e6, "0.0 to 1000000.0"),
    ("daily_performance", "score", 1e100, "-1000000.0 to 1000000.0"),
    ("courses", "credits", 2_000_000_000, "0 to 1000"),
    ("students", "year_level", -5, "0 to 100"),
    ("grades", "graded_on", "0001-01-01", "1900-01-01 to 2199-12-31"),
    ("attendance", "date", "9999-12-31", "1900-01-01 to 2199-12-31"),
]


@pytest.mark.parametrize("via", ["events", "json file"])
@pytest.mark.parametrize(("entity", "field", "value", "allowed"), CASES)
def test_a_value_outside_its_range_is_a_record_error(
    target: Engine,
    events: list[Event],
    via: str,
    entity: str,
    field: str,
    value: Any,
    allowed: str,
) -> None:
    bad, key = _changed(events, entity, **{field: value})
    if via == "json file":
        bad = _through_json(bad, target)
        if field in ("weight", "credits") and target.dialect.name == "postgresql":
            # The out-of-range record leaves the raw path; the rest of its run stays raw.
            assert any(isinstance(e, RawBatch) for e in bad)
    out = run(target, bad)
    assert out.status is Status.FAILED
    error = out.errors[0]  # children of a refused parent follow it, "rejected"
    assert (error.entity, error.natural_key, error.field) == (entity, key, field)
    assert allowed in error.reason, error.reason
    assert sum(1 for e in out.errors if e.field == field) == 1
    with target.connect() as conn:  # the failed run changed nothing: still empty
        for e in SCHOOL.in_order():
            assert not conn.exec_driver_sql(f'SELECT count(*) FROM "{e.table.name}"').scalar()


def test_a_csv_weight_of_1e308_is_a_record_error(target: Engine, events: list[Event]) -> None:
    assert run(target, events).status is Status.COMPLETED
    before = checksum(target)
    columns = ["student_id", "course_code", "assessment", "weight"]
    grade = records(events)["grades"][0]
    rows = [{**{k: grade[k] for k in columns}, "weight": "1e308"}]
    out = run(target, _csv_events("grades", columns, rows), entity="grades")
    assert out.status is Status.FAILED
    [error] = out.errors
    assert error.field == "weight" and "allowed: 0.0 to 1000000.0" in error.reason
    assert error.natural_key == "/".join(
        grade[k] for k in ("student_id", "course_code", "assessment")
    )
    assert checksum(target) == before


def test_values_at_the_edges_of_their_range_are_stored(target: Engine, events: list[Event]) -> None:
    edge, _ = _changed(events, "grades", weight=1_000_000.0, score=-1_000_000.0,
                       graded_on="1900-01-01")  # fmt: skip
    assert run(target, _through_json(edge, target)).status is Status.COMPLETED
