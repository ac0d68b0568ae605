"""The cache-hit path: the data version is read from the database on every call (one
round trip on a connection of the reader's own), so an import that another process
commits shows at once; responses are built as wire bytes around the cached bytes; the
configuration that changes a report's numbers is part of its key."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from ferry.cache.memory import MemoryCache
from ferry.cache.report_cache import ReportCache
from ferry.db.engine import make_engine
from ferry.reports import versions
from ferry.reports.engine import ReportEngine, response_bytes
from ferry.reports.settings import Band, ReportSettings
from ferry.reports.student import Scope
from ferry.v1 import reports_pb2 as pb
from tests.reports.helpers import SEM

ROOT = Path(__file__).resolve().parents[2]


def _in_another_process(code: str) -> None:
    """Run `code` in a fresh Python process (its own engine, connections and caches)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, check=True, timeout=120
    )


def _math(engine: ReportEngine) -> tuple[float, bool]:
    r, cached = engine.student("S1", Scope(semester=SEM))
    return next(c for c in r.courses if c.course_code == "MATH").weighted_percent, cached


def test_an_import_committed_by_another_process_shows_at_once(
    engine: ReportEngine, school_url: str
) -> None:
    assert _math(engine) == (87.5, False)
    for _ in range(10):  # the reader's connection is warm and its statement prepared
        assert _math(engine) == (87.5, True)
    _in_another_process(f"""
        from tests.reports.test_freshness import _import_exam
        assert _import_exam({school_url!r}, 50).status.value == "completed"
    """)
    assert _math(engine) == (95.0, False)  # the very next call: the new version's key
    assert _math(engine) == (95.0, True)
    _in_another_process(f"""
        from ferry.db.engine import make_engine
        from ferry.reports import versions
        db = make_engine({school_url!r})
        with db.begin() as conn:
            versions.bump_generation(conn)  # what InvalidateCache(all) does elsewhere
        db.dispose()
    """)
    assert _math(engine) == (95.0, False)


def test_the_reader_sees_each_commit_and_never_holds_a_transaction(school_url: str) -> None:
    db = make_engine(school_url)
    reader = versions.VersionReader(db)
    try:
        seen = []
        for _ in range(3):
            seen.append(reader.stamp(versions.STUDENT, "S1"))
            with db.begin() as conn:  # another connection commits a bump
                versions.bump(conn, versions.STUDENT, ["S1"])
        assert seen == ["@1;", "@1;sS1=1", "@1;sS1=2"]  # the acting school first
        assert reader.stamp(versions.SEMESTER, SEM) == "@1;"
        with db.begin() as conn:
            versions.bump_generation(conn)
        assert reader.stamp(versions.STUDENT, "S1") == "@1;g=1;sS1=3"
        if reader.fast:
            assert reader._open == 1 and len(reader._idle) == 1
            conn = reader._idle[0][1]
            assert conn.autocommit
            assert conn.info.transaction_status.name == "IDLE"  # no snapshot kept between reads
    finally:
        reader.close()
        db.dispose()


# The one-round-trip reader is PostgreSQL's (SQLite reads through the engine).
@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_dropped_reader_connection_falls_back_then_recovers(
    backend: str, school_url: str
) -> None:
    db = make_engine(school_url)
    reader = versions.VersionReader(db)
    try:
        assert reader.stamp(versions.STUDENT, "S1") == "@1;"
        assert reader.fast
        pid = reader._idle[0][1].info.backend_pid
        with db.begin() as conn:
            conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            versions.bump(conn, versions.STUDENT, ["S1"])
        assert reader.stamp(versions.STUDENT, "S1") == "@1;sS1=1"  # by the engine's path
        assert reader._open == 0
        assert reader.stamp(versions.STUDENT, "S1") == "@1;sS1=1"  # a new connection of its own
        assert reader._open == 1
    finally:
        reader.close()
        db.dispose()


def test_busy_readers_take_the_engines_path(school_url: str) -> None:
    db = make_engine(school_url)
    reader = versions.VersionReader(db, max_connections=1)
    try:
        reader.stamp(versions.STUDENT, "S1")
        held = reader._take()  # every connection of its own is in use
        assert reader.stamp(versions.STUDENT, "S1") == "@1;"
        if held is not None:
            reader._give(held)
    finally:
        reader.close()
        db.dispose()


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16_383, 16_384, 70_000])
@pytest.mark.parametrize("cached", [False, True])
def test_response_bytes_are_what_protobuf_writes(size: int, cached: bool) -> None:
    report = pb.StudentReport(student_id="x" * size) if size else pb.StudentReport()
    data = report.SerializeToString(deterministic=True)
    wire = response_bytes(data, cached)
    expected = pb.GetStudentReportResponse(report=report, cached=cached)
    assert wire == expected.SerializeToString(deterministic=True)
    assert pb.GetStudentReportResponse.FromString(wire) == expected
    sem = pb.SemesterReport(semester="x" * size)
    assert response_bytes(sem.SerializeToString(), cached) == pb.GetSemesterReportResponse(
        report=sem, cached=cached
    ).SerializeToString(deterministic=True)


def test_the_configuration_is_part_of_the_key(school_url: str) -> None:
    """Two replicas with different grading scales on one shared cache never share an entry."""
    db = make_engine(school_url)
    shared = ReportCache(MemoryCache(), "memory", 60)
    strict = ReportSettings(grading_scale=[Band(letter="P", min_percent=95, points=1),
                                           Band(letter="F", min_percent=0, points=0)])  # fmt: skip
    a = ReportEngine(db, ReportSettings(), shared)
    b = ReportEngine(db, strict, shared)
    try:
        ra, cached_a = a.student("S1", Scope(semester=SEM))
        rb, cached_b = b.student("S1", Scope(semester=SEM))
        assert not cached_a and not cached_b
        assert [g.letter for g in rb.grading_scale] == ["P", "F"]
        assert [g.letter for g in ra.grading_scale] != ["P", "F"]
        assert a.student("S1", Scope(semester=SEM)) == (ra, True)
    finally:
        a.close()
        b.close()
        db.dispose()


def _response(
    engine: ReportEngine, req: pb.GetStudentReportRequest, role: int = 0
) -> tuple[float, bool]:
    r = pb.GetStudentReportResponse.FromString(engine.student_response(req, role))
    return next(c for c in r.report.courses if c.course_code == "MATH").weighted_percent, r.cached


def test_a_request_seen_before_is_never_served_stale(engine: ReportEngine, school_url: str) -> None:
    """student_response remembers a request's checks and its last key (the hit's hot
    path); an import committed by another process still shows on the very next call of
    the same request, and its answer is the bytes student_bytes gives (the oracle)."""
    req = pb.GetStudentReportRequest(student_id="S1", semester=SEM)
    assert _response(engine, req) == (87.5, False)
    for _ in range(5):
        assert _response(engine, req) == (87.5, True)
    _in_another_process(f"""
        from tests.reports.test_freshness import _import_exam
        assert _import_exam({school_url!r}, 50).status.value == "completed"
    """)
    assert _response(engine, req) == (95.0, False)
    assert _response(engine, req) == (95.0, True)
    # The same student written another way is the same entry; another role is another one.
    padded = pb.GetStudentReportRequest(student_id=" S1 ", semester=SEM)
    assert _response(engine, padded) == (95.0, True)
    assert _response(engine, req, role=2) == (95.0, False)
    wire = engine.student_response(req)
    assert wire == response_bytes(*engine.student_bytes("S1", Scope(semester=SEM)))
    db = make_engine(school_url)
    try:
        with db.begin() as conn:
            versions.bump_generation(conn)  # what InvalidateCache(all) does
        versions.settle(db, True)  # as every change does before it returns
    finally:
        db.dispose()
    assert _response(engine, req) == (95.0, False)


def test_a_bad_request_is_refused_every_time(engine: ReportEngine) -> None:
    """Only requests that passed their checks are remembered: a bad one fails each call."""
    from ferry.errors import InvalidArgument

    bad = [
        pb.GetStudentReportRequest(student_id="", semester=SEM),
        pb.GetStudentReportRequest(student_id="S1\x00", semester=SEM),
        pb.GetStudentReportRequest(student_id="S1", date_from="2026-13-01"),
        pb.GetStudentReportRequest(student_id="S1", semester=SEM, language="xx"),
    ]
    for req in bad:
        for _ in range(3):
            with pytest.raises(InvalidArgument):
                engine.student_response(req)
    assert not engine._hot


def test_the_remembered_requests_are_bounded(
    engine: ReportEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.reports import engine as engine_module

    monkeypatch.setattr(engine_module, "HOT_REQUESTS", 3)
    for sid in ("S1", "S2", "S3", "S4", "S5", "S1"):
        engine.student_response(pb.GetStudentReportRequest(student_id=sid, semester=SEM))
        assert len(engine._hot) <= 3
