"""A cached report is never stale: imports, undo and csv imports bump data versions in
their own transaction; the cache (memory or the real Redis) answers hits, misses and
invalidation; a Redis that dies mid-test changes nothing but speed."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.bundle.formats.base import Batch
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.errors import NotFound
from ferry.merge import undo_import
from ferry.reports.engine import ReportEngine
from ferry.reports.student import Scope
from tests.conftest import REDIS
from tests.merge.helpers import bundle, edited, records, run
from tests.reports.helpers import SEM, Proxy

pytestmark = pytest.mark.redis


def _exam_index(events: list[Any]) -> int:
    grades = records(events)["grades"]
    return next(
        i
        for i, g in enumerate(grades)
        if (g["student_id"], g["course_code"], g["assessment"]) == ("S1", "MATH", "Exam")
    )


def _math(engine: ReportEngine) -> tuple[float, bool]:
    r, cached = engine.student("S1", Scope(semester=SEM))
    return next(c for c in r.courses if c.course_code == "MATH").weighted_percent, cached


def _import_exam(url: str, score: float) -> Any:
    db = make_engine(url)
    try:
        events = bundle(db, SEM)
        return run(
            db, edited(events, "grades", _exam_index(events), score=score), strategy="update"
        )
    finally:
        db.dispose()


def test_import_then_undo_shows_at_once(engine: ReportEngine, school_url: str) -> None:
    assert _math(engine) == (87.5, False)
    assert _math(engine) == (87.5, True)
    outcome = _import_exam(school_url, 50)  # 50/50: (0.8 + 3) / 4 = 95%
    assert outcome.status.value == "completed"
    assert _math(engine) == (95.0, False)
    db = make_engine(school_url)
    try:
        undo_import(db, SCHOOL, outcome.id)
    finally:
        db.dispose()
    assert _math(engine) == (87.5, False)  # not the entry cached before the import


def test_entity_import_and_dry_run(engine: ReportEngine, school_url: str) -> None:
    assert _math(engine)[0] == 87.5
    db = make_engine(school_url)
    try:
        dry = run(
            db, edited(bundle(db, SEM), "grades", 0, score=1), strategy="update", dry_run=True
        )
        assert dry.status.value == "dry_run"
        assert _math(engine) == (87.5, True)  # a dry run changes nothing, bumps nothing
        grade = next(
            g
            for g in records(bundle(db, SEM))["grades"]
            if (g["student_id"], g["assessment"]) == ("S1", "Exam")
        )
        one = [Batch("grades", [{**grade, "score": 40}])]  # a csv import: one entity
        assert run(db, one, entity="grades", strategy="update").status.value == "completed"
        versions = dict(
            db.connect()
            .execute(sa.text("SELECT kind || ':' || key, version FROM report_versions"))
            .all()
        )
    finally:
        db.dispose()
    # S1 and the classmates whose MATH class average changed; S6 is in no class of it.
    assert versions == {**{f"student:S{i}": 1 for i in range(1, 6)}, f"semester:{SEM}": 1}
    assert _math(engine) == (((0.8 + 0.8 * 3) / 4 * 100), False)


def test_new_students_bump_nothing_and_their_undo_bumps_them(
    engine: ReportEngine, school_url: str
) -> None:
    """A csv of new students writes no data version (nothing of theirs can be cached:
    a student that does not exist is NOT_FOUND, and that is never cached), yet the report
    after the import is theirs; the undo bumps them, so what was cached since goes."""
    scope = Scope(semester=SEM)
    with pytest.raises(NotFound):
        engine.student("S900", scope)  # asked for before it exists: nothing cached
    new = {"student_id": "S900", "first_name": "Νέα", "last_name": "Μαθήτρια",
           "email": "s900@example.org", "year_level": 9, "status": "active"}  # fmt: skip
    db = make_engine(school_url)
    try:
        outcome = run(db, [Batch("students", [new])], entity="students", strategy="update")
        assert outcome.status.value == "completed"
        with db.connect() as c:
            rows = c.execute(sa.text("SELECT kind, key FROM report_versions")).all()
        assert rows == []  # no classmates, no class: nothing to bump
        report, cached = engine.student("S900", scope)
        assert (report.first_name, list(report.courses), cached) == ("Νέα", [], False)
        assert engine.student("S900", scope)[1]  # now cached
        undo_import(db, SCHOOL, outcome.id)
        with db.connect() as c:
            rows = c.execute(sa.text("SELECT kind, key, version FROM report_versions")).all()
        assert [tuple(r) for r in rows] == [("student", "S900", 1)]
    finally:
        db.dispose()
    with pytest.raises(NotFound):
        engine.student("S900", scope)  # gone with its import, not served from the cache


def test_a_classmates_grade_changes_the_class_average_at_once(
    engine: ReportEngine, school_url: str
) -> None:
    def average() -> tuple[float, bool]:
        r, cached = engine.student("S1", Scope(semester=SEM))
        return next(c for c in r.courses if c.course_code == "MATH").class_average, cached

    assert average() == (77.5, False)
    assert average() == (77.5, True)
    db = make_engine(school_url)
    try:
        events = bundle(db, SEM)
        grades = records(events)["grades"]
        i = next(n for n, g in enumerate(grades) if (g["student_id"], g["course_code"]) ==
                 ("S5", "MATH"))  # fmt: skip
        run(db, edited(events, "grades", i, score=100), strategy="update")  # 60 -> 100
    finally:
        db.dispose()
    assert average() == ((87.5 + 70 + 80 + 90 + 100) / 5, False)


def test_invalidate_one_and_all(engine: ReportEngine) -> None:
    _math(engine)
    assert _math(engine)[1]
    assert engine.invalidate("S1") == 1
    assert not _math(engine)[1]
    assert _math(engine)[1]
    assert engine.invalidate("") == 1  # a new generation
    assert not _math(engine)[1]
    with pytest.raises(NotFound):
        engine.invalidate("S404")


def test_redis_hit_miss_invalidate(redis_app: Callable[..., App]) -> None:
    a = ReportEngine.from_app(redis_app())
    b = ReportEngine.from_app(redis_app())  # another replica: same Redis
    assert a.cache.name == "redis"
    assert _math(a) == (87.5, False)
    assert _math(b) == (87.5, True)  # filled by a
    a.invalidate("S1")
    assert _math(b) == (87.5, False)
    stats = b.stats()
    assert (stats.hits, stats.misses, stats.errors, stats.breaker) == (1, 1, 0, "closed")
    assert stats.entries >= 2


def test_redis_down_mid_test_still_served_and_never_stale(
    redis_app: Callable[..., App], school_url: str
) -> None:
    proxy = Proxy(REDIS)
    proxy.start()
    try:
        app = redis_app(
            FERRY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
            FERRY_PLUGINS_CACHES_REDIS_BREAKER_RESET_SECONDS="0.3",
            # The first read after Redis is back waits for the breaker's trial PING
            # (the default 10 ms lost that race under CI's load: that read then neither
            # read nor wrote the cache, and the next one was a miss again).
            FERRY_PLUGINS_CACHES_REDIS_BREAKER_TRIAL_WAIT_SECONDS="5",
            FERRY_PLUGINS_SERVICES_REPORTS_CACHE_NEAR_BYTES="0",  # every read goes to Redis
        )
        e = ReportEngine.from_app(app)
        assert _math(e) == (87.5, False)
        assert _math(e) == (87.5, True)
        proxy.stop()  # Redis gone
        t = time.perf_counter()
        for _ in range(20):
            assert _math(e) == (87.5, False)  # computed, no error
        assert time.perf_counter() - t < 5
        assert e.stats().errors >= 1 and e.cache.breaker.state != "closed"
        _import_exam(school_url, 50)  # the import commits while Redis is down
        proxy.start()  # Redis is back, still holding the 87.5 entry
        time.sleep(0.4)
        assert _math(e) == (95.0, False)  # the new version's key: never the stale entry
        assert _math(e) == (95.0, True)
        assert e.cache.breaker.state == "closed"
    finally:
        proxy.stop()


def test_near_entries_outlive_a_redis_outage_and_are_never_stale(
    redis_app: Callable[..., App], school_url: str
) -> None:
    """With the near cache (the default), a hot report is served from this process: a
    Redis outage does not even show, and an import made during it changes the key, so
    the next read computes the new numbers instead of serving the kept ones."""
    proxy = Proxy(REDIS)
    proxy.start()
    try:
        e = ReportEngine.from_app(redis_app(FERRY_REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0"))
        assert e.cache.near is not None
        assert _math(e) == (87.5, False)
        proxy.stop()  # Redis gone
        assert [_math(e) for _ in range(5)] == [(87.5, True)] * 5  # from this process
        assert e.stats().errors == 0  # Redis was not asked
        _import_exam(school_url, 50)
        assert _math(e) == (95.0, False)  # a new key: computed, never the kept 87.5
        assert _math(e) == (95.0, True)
    finally:
        proxy.stop()


def test_closed_port_from_the_start(redis_app: Callable[..., App]) -> None:
    app = redis_app(  # every read goes to Redis (the near cache would answer the repeats)
        FERRY_REDIS_URL="redis://127.0.0.1:1/0", FERRY_PLUGINS_SERVICES_REPORTS_CACHE_NEAR_BYTES="0"
    )
    e = ReportEngine.from_app(app)
    t = time.perf_counter()
    for _ in range(10):
        assert _math(e) == (87.5, False)
    assert time.perf_counter() - t < 3
    s = e.stats()
    assert s.errors >= 1 and s.hits == 0 and s.entries == -1
