"""The plan's every-record file (ferry.merge.planfile) in-process: the narrow resolve of
PostgreSQL (a view over the staged rows) writes the same lines as the wide one, a failed
run keeps no file, and a run that is no dry run writes none."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.merge import MergeOptions, Status, plan, run_import
from tests.merge.helpers import edited, run


class Sink:
    """Files by import id, kept only when the writer's block ends cleanly."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    @contextmanager
    def __call__(self, import_id: str) -> Iterator[io.BytesIO]:
        buf = io.BytesIO()
        yield buf
        self.files[import_id] = buf.getvalue()


def _dry(target: Engine, events: list[Event], sink: Sink, **options: Any) -> Any:
    return run_import(
        target,
        SCHOOL,
        events,
        MergeOptions(dry_run=True, plan_records=True, **options),
        requested_by="tester",
        source_sha256="sha",
        plan_sink=sink,
    )


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def test_narrow_and_wide_resolves_write_the_same_records(
    events: list[Event], target: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(target, events)
    changed = edited(events, "courses", 0, title="Changed at the source")
    changed = edited(changed, "grades", 2, score=1.5)
    sink = Sink()
    wide = _dry(target, changed, sink)
    monkeypatch.setattr(plan, "NARROW_MIN_ROWS", 0)  # every entity narrow (PostgreSQL)
    narrow = _dry(target, changed, sink)
    assert wide.status is narrow.status is Status.DRY_RUN
    a, b = _lines(sink.files[wide.id]), _lines(sink.files[narrow.id])
    assert a == b
    assert len(a) == sum(len(e.records) for e in changed if hasattr(e, "records"))
    updates = [r for r in a if r["action"] == "update"]
    assert {(r["entity"], r["changes"][0]["field"]) for r in updates} == {
        ("courses", "title"),
        ("grades", "score"),
    }
    assert next(r for r in updates if r["entity"] == "courses")["changes"][0]["after"] == (
        "Changed at the source"
    )
    assert all(r["action"] == "unchanged" for r in a if r not in updates)


def test_only_a_dry_run_that_ends_as_one_keeps_its_records(
    events: list[Event], target: Engine
) -> None:
    sink = Sink()
    done = run_import(
        target,
        SCHOOL,
        events,
        MergeOptions(plan_records=True),
        requested_by="tester",
        source_sha256="sha",
        plan_sink=sink,
    )
    assert done.status is Status.COMPLETED and sink.files == {} and not done.plan_records
    bad = edited(events, "grades", 0, score="not a number")
    failed = _dry(target, bad, sink)
    assert failed.status is Status.FAILED and sink.files == {} and not failed.plan_records
