"""Never stale, with readers and a writer at once: a GetStudentReport call that starts
after a write has committed never answers with the report from before it, while other
calls fill and hit the cache around it (the random-sequence property test in
test_moves.py checks the same one step at a time)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.engine import make_engine
from ferry.reports import versions
from ferry.v1 import reports_pb2 as pb
from ferry.v1 import reports_pb2_grpc
from tests.conftest import auth, running
from tests.reports.helpers import SEM


@pytest.fixture
def stub(reports_app: App) -> Iterator[reports_pb2_grpc.ReportsServiceStub]:
    with (
        running(reports_app, ["reports"]) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        yield reports_pb2_grpc.ReportsServiceStub(ch)


def _rename(db: sa.Engine, n: int) -> None:
    """What an import does: change S1's data and bump its version in one transaction,
    then, before returning, wait for every reports process that keeps versions in memory
    to have seen the commit (versions.settle; without it the server's listener may answer
    from the versions of before for a few milliseconds after the commit returned)."""
    with db.connect() as conn:
        conn.execute(
            sa.text("UPDATE students SET first_name = :f WHERE student_id = 'S1'"),
            {"f": f"N{n:04d}"},
        )
        versions.bump(conn, versions.STUDENT, ["S1"])
        conn.commit()
        was_changed = versions.changed(conn)
    versions.settle(db, was_changed)


def test_a_call_after_a_commit_never_sees_the_report_from_before_it(
    stub: reports_pb2_grpc.ReportsServiceStub, reports_app: App, school_url: str
) -> None:
    """Four clients read S1's report over gRPC while a writer (another engine, as another
    process would) commits 20 renames, each with its version bump. Each client notes the
    last rename whose commit had returned before it sent its call: the name in the
    answer is never older. The writer waits for a cached answer between commits (on a
    loaded machine a miss can outlast any fixed pause), so the readers both fill and hit
    the cache around every write. (About 2 s on PostgreSQL.)"""
    md = tuple(auth(reports_app, "viewer"))
    req = pb.GetStudentReportRequest(student_id="S1", semester=SEM)
    db = make_engine(school_url)
    _rename(db, 0)
    committed = [0]  # the last rename whose commit has returned
    done = threading.Event()
    stale: list[tuple[int, str]] = []
    calls = [0, 0]  # all, hits
    lock = threading.Lock()
    hit = threading.Condition(lock)

    def read() -> None:
        while not done.is_set():
            before = committed[0]
            r = stub.GetStudentReport(req, metadata=md, timeout=30)
            with lock:
                calls[0] += 1
                calls[1] += r.cached
                if r.cached:
                    hit.notify_all()
                if int(r.report.first_name[1:]) < before:
                    stale.append((before, r.report.first_name))

    readers = [threading.Thread(target=read) for _ in range(4)]
    for t in readers:
        t.start()
    try:
        for n in range(1, 21):
            _rename(db, n)
            committed[0] = n
            with hit:  # the readers hit the cache between writes
                hits = calls[1]
                hit.wait_for(lambda h=hits: calls[1] > h, timeout=30)
    finally:
        done.set()
        for t in readers:
            t.join()
        db.dispose()
    assert stale == []
    r = stub.GetStudentReport(req, metadata=md, timeout=30)
    assert r.report.first_name == "N0020"
    assert 0 < calls[1] < calls[0]  # calls hit the cache, and missed it after writes
