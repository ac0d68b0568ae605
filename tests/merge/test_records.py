"""Imports are recorded: idempotency keys, listing, and serialised concurrent runs."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.errors import AlreadyExists, InvalidArgument, NotFound
from ferry.merge import ImportOutcome, Status, get_import, list_imports
from tests.merge.helpers import counts, edited, records, run, scalar


def test_same_key_and_payload_returns_the_first_outcome_without_a_second_effect(
    events: list[Event], target: Engine
) -> None:
    first = run(target, events, idempotency_key="k1", sha="aaa")
    changes = scalar(target, "SELECT count(*) FROM import_changes")
    again = run(target, events, idempotency_key="k1", sha="aaa")
    assert again.id == first.id and again.status is Status.COMPLETED
    assert counts(again) == counts(first)
    assert scalar(target, "SELECT count(*) FROM import_changes") == changes
    assert len(list_imports(target, 0, "").items) == 1


def test_same_key_with_another_payload_is_already_exists(
    events: list[Event], target: Engine
) -> None:
    run(target, events, idempotency_key="k1", sha="aaa")
    with pytest.raises(AlreadyExists, match="k1"):
        run(target, edited(events, "courses", 0, title="x"), idempotency_key="k1", sha="bbb")
    assert scalar(target, "SELECT count(*) FROM courses WHERE title = 'x'") == 0


def test_a_failed_run_does_not_claim_its_key(events: list[Event], target: Engine) -> None:
    bad = run(target, edited(events, "grades", 0, score="x"), idempotency_key="k2", sha="bad")
    assert bad.status is Status.FAILED
    good = run(target, events, idempotency_key="k2", sha="good")
    assert good.status is Status.COMPLETED


def test_imports_are_listed_newest_first_in_pages(events: list[Event], target: Engine) -> None:
    ids = [run(target, events, dry_run=True).id for _ in range(3)]
    page = list_imports(target, 2, "")
    assert [o.id for o in page.items] == ids[::-1][:2] and page.next_token
    rest = list_imports(target, 2, page.next_token)
    assert [o.id for o in rest.items] == ids[:1] and rest.next_token == ""
    assert get_import(target, ids[0]).requested_by == "tester"
    with pytest.raises(NotFound):
        get_import(target, "nope")
    with pytest.raises(InvalidArgument):
        list_imports(target, 500, "")
    with pytest.raises(InvalidArgument):
        list_imports(target, 10, "%%%")


def test_two_concurrent_imports_into_one_semester_are_serialised(
    events: list[Event], target: Engine
) -> None:
    results: list[ImportOutcome] = []
    failures: list[BaseException] = []

    def go() -> None:
        try:
            results.append(run(target, events))
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(r.status for r in results) == [Status.COMPLETED, Status.COMPLETED]
    created = sorted(sum(s.created for s in r.summaries) for r in results)
    unchanged = sorted(sum(s.unchanged for s in r.summaries) for r in results)
    total = sum(len(v) for v in records(events).values())
    assert created == [0, total] and unchanged == [0, total]
    assert scalar(target, "SELECT count(*) FROM grades") == len(records(events)["grades"])
