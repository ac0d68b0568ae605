"""The reports service against one `ferry serve` process on PostgreSQL + Redis: a cached
student report (hit) and a computed one (miss) over gRPC loopback, the PDF render, a bulk
ZIP of 50 PDFs, the cache with Redis unreachable, and a cached report through the gateway.

Each row sets Ferry beside the raw operation underneath, measured in the same run: a bare
redis-py GET of the same bytes (hits), the report computed in-process with no gRPC and no
cache (misses), the PDF rendered in-process (renders), 50 in-process renders one after
another (bulk), the miss on a healthy Redis (outage), direct gRPC (gateway).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import psycopg
import redis

from bench.common import Row
from bench.server import FerryServer
from ferry.db.engine import make_engine
from ferry.reports.render_pdf import student_pdf
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope, student_report
from ferry.v1 import options_pb2, reports_pb2_grpc
from ferry.v1 import reports_pb2 as pb

SEMESTER = "2026-fall"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _times(call: Callable[[int], object], n: int, before: Callable[[int], object] | None = None,
           warm: int = 5) -> list[float]:  # fmt: skip
    """Sorted seconds of `call(i)` for i in 0..n-1 (`before(i)` runs untimed first)."""
    for i in range(warm):
        if before:
            before(i)
        call(i)
    out = []
    for i in range(n):
        if before:
            before(i)
        t = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t)
    return sorted(out)


def _p(ts: list[float], q: float) -> float:
    return ts[min(len(ts) - 1, int(q * len(ts)))] * 1000


def _ms(ts: list[float]) -> str:
    return f"p50 {_p(ts, 0.5):.2f} ms, p99 {_p(ts, 0.99):.2f} ms"


def _per_s(ts: list[float]) -> float:
    return 1 / statistics.median(ts)


def _students(dsn: str, n: int) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT s.student_id FROM students s JOIN enrollments e ON "
            "e.student_ref = s.id JOIN courses c ON c.id = e.course_ref "
            "WHERE c.semester = %s AND s.deleted_at IS NULL AND e.deleted_at IS NULL "
            "AND c.deleted_at IS NULL ORDER BY s.student_id LIMIT %s",
            (SEMESTER, n),
        ).fetchall()
    return [r[0] for r in rows]


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    ids = _students(dsn, 120)
    prefix = f"ferry-bench-{uuid.uuid4().hex[:8]}-"
    env = {
        "FERRY_EXPORT_WORKERS": "0",
        "FERRY_REDIS_URL": REDIS_URL,
        "FERRY_PLUGINS_SERVICES_REPORTS_CACHE_BACKEND": "redis",
        "FERRY_PLUGINS_CACHES_REDIS_KEY_PREFIX": prefix,
    }
    rows: list[Row] = []
    server = FerryServer(url, workdir, services=(), env=env)
    tok = server.token(options_pb2.ROLE_OPERATOR)
    md = (("authorization", f"Bearer {tok}"),)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = reports_pb2_grpc.ReportsServiceStub(channel)
    r = redis.Redis.from_url(REDIS_URL)
    try:
        sid = ids[0]
        req = pb.GetStudentReportRequest(student_id=sid, semester=SEMESTER)

        def get(i: int, who: str | None = None) -> pb.GetStudentReportResponse:
            return stub.GetStudentReport(
                pb.GetStudentReportRequest(student_id=who or ids[i % len(ids)],
                                           semester=SEMESTER),
                metadata=md, timeout=30,
            )  # fmt: skip

        def clear(_: int) -> None:
            stub.InvalidateCache(pb.InvalidateCacheRequest(), metadata=md, timeout=30)

        n_hit = 300 * repeat
        assert stub.GetStudentReport(req, metadata=md, timeout=30).report.student_id == sid
        hits = _times(lambda i: get(i, sid), n_hit)
        assert get(0, sid).cached
        value = r.get(next(iter(r.scan_iter(prefix + "student:*")))) or b""
        r.set(prefix + "raw", value)
        raw = _times(lambda i: r.get(prefix + "raw"), n_hit)
        n_miss = 20 * repeat
        misses = _times(get, n_miss, before=clear)
        engine = make_engine(url)
        settings = ReportSettings()

        def direct(i: int) -> object:
            with engine.connect() as conn:
                return student_report(conn, settings, ids[i % len(ids)], Scope(SEMESTER))

        inproc = _times(direct, n_miss)
        rows.append(Row(
            "GetStudentReport cache hit (Redis), gRPC loopback", n_hit, _per_s(hits),
            "redis-py GET of the same bytes", _per_s(raw),
            0.0, f"{_ms(hits)}; raw GET {_ms(raw)}; hit is {_p(misses, .5) / _p(hits, .5):.0f}x "
            f"faster than a miss (p50)",
        ))  # fmt: skip
        rows.append(Row(
            "GetStudentReport miss (computed), gRPC loopback", n_miss, _per_s(misses),
            "student_report() in-process, no gRPC, no cache", _per_s(inproc),
            0.0, f"{_ms(misses)}; in-process {_ms(inproc)}; {SEMESTER}",
        ))  # fmt: skip

        def render(i: int) -> int:
            rq = pb.RenderStudentReportRequest(report=pb.GetStudentReportRequest(
                student_id=ids[i % len(ids)], semester=SEMESTER), format="pdf")  # fmt: skip
            return sum(len(c.chunk.data) for c in stub.RenderStudentReport(rq, metadata=md,
                                                                           timeout=60))  # fmt: skip

        renders = _times(render, n_miss, before=clear)
        reports = [direct(i) for i in range(n_miss)]
        bare = _times(lambda i: student_pdf(reports[i]), n_miss)  # type: ignore[arg-type]
        rows.append(Row(
            "RenderStudentReport pdf with charts (miss), gRPC loopback", n_miss,
            _per_s(renders), "student_pdf() in-process (reportlab render only)", _per_s(bare),
            0.0, f"{_ms(renders)}; bare render {_ms(bare)}",
        ))  # fmt: skip

        fifty = ids[:50]

        def bulk(_: int) -> int:
            rq = pb.BulkStudentReportsRequest(student_ids=fifty, output="zip", semester=SEMESTER)
            return sum(len(c.chunk.data) for c in stub.BulkStudentReports(rq, metadata=md,
                                                                          timeout=300))  # fmt: skip

        runs = min(repeat, 3)  # the ratelimit filter allows 10 a minute
        bulk_t = _times(bulk, runs, before=clear, warm=0)
        bare50 = _times(lambda _: [student_pdf(direct(i)) for i in range(50)], runs, warm=0)
        rows.append(Row(
            "BulkStudentReports 50 students, ZIP of PDFs (reports/s)", 50 * runs,
            50 / statistics.median(bulk_t), "50 x (student_report + student_pdf) in-process",
            50 / statistics.median(bare50), 0.0,
            f"{statistics.median(bulk_t):.2f} s per bulk (min {bulk_t[0]:.2f}, max "
            f"{bulk_t[-1]:.2f}); in-process {statistics.median(bare50):.2f} s",
        ))  # fmt: skip

        # The cached report through the gateway vs the same call over gRPC.
        http = httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}",
                            headers={"authorization": f"Bearer {tok}"})  # fmt: skip
        body = {"student_id": sid, "semester": SEMESTER}

        def via_gw(_: int) -> bytes:
            resp = http.post("/api/v1/reports/student-performance", json=body)
            resp.raise_for_status()
            return resp.content

        n_gw = 500 * repeat
        gw = _times(via_gw, n_gw, warm=20)
        direct_hits = _times(lambda i: get(i, sid), n_gw, warm=20)
        rows.append(Row(
            "gateway POST /api/v1/reports/student-performance (cached)", n_gw, _per_s(gw),
            "direct gRPC GetStudentReport (cached)", _per_s(direct_hits), server.rss_mb(),
            f"gateway {_ms(gw)}; gRPC {_ms(direct_hits)}; p50 overhead "
            f"{_p(gw, .5) - _p(direct_hits, .5):.2f} ms; sequential, keep-alive",
        ))  # fmt: skip
        http.close()
        engine.dispose()
    finally:
        channel.close()
        server.stop()
        keys = list(r.scan_iter(prefix + "*"))
        if keys:
            r.delete(*keys)

    # Redis unreachable: a closed port. Every call computes; none may fail.
    down = FerryServer(url, workdir, services=("reports",), env={
        **env, "FERRY_REDIS_URL": "redis://127.0.0.1:1/0"})  # fmt: skip
    channel = grpc.insecure_channel(f"127.0.0.1:{down.port}")
    stub = reports_pb2_grpc.ReportsServiceStub(channel)
    md = (("authorization", f"Bearer {down.token(options_pb2.ROLE_OPERATOR)}"),)
    errors = 0

    def get_down(i: int) -> None:
        nonlocal errors
        try:
            q = pb.GetStudentReportRequest(student_id=ids[i % len(ids)], semester=SEMESTER)
            stub.GetStudentReport(q, metadata=md, timeout=30)
        except grpc.RpcError:
            errors += 1

    try:
        outage = _times(get_down, n_miss)
    finally:
        channel.close()
        down.stop()
    rows.append(Row(
        "GetStudentReport with Redis unreachable (closed port)", n_miss, _per_s(outage),
        "the miss with Redis up (above)", _per_s(misses), 0.0,
        f"{_ms(outage)}; p99 {_p(outage, .99) - _p(misses, .99):+.2f} ms vs miss p99; "
        f"{errors} errors",
    ))  # fmt: skip
    r.close()
    return rows
