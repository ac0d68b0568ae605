"""Records staged unparsed (RawBatch, the json fast path) merge exactly like parsed ones."""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats import runs
from ferry.bundle.formats.base import Batch, BundleLimits, Event, RawBatch
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import field_rules
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
