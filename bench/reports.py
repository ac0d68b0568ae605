"""The reports service against one `ferry serve` process on PostgreSQL + Redis: a cached
student report (hit) and a computed one (miss) over gRPC loopback, the PDF render, a bulk
ZIP of 50 PDFs, the cache with Redis unreachable, and a cached report through the gateway.

Each row sets Ferry beside the raw operation underneath, measured in the same run: a bare
redis-py GET of the same bytes (hits; the near-cache hit also beside the same server's
health Check and a data version read, the three taken in turns: a hit waits for that
read only under `reports.versions: read`; with `auto`, the default, PostgreSQL's
notifications keep the versions in the serving process's memory), the report
computed in-process with no gRPC and no cache (misses), the PDF rendered in-process
(renders), 50 in-process renders one after another (bulk), the miss on a healthy Redis
(outage: Redis at a closed port, and Redis black-holed, a port that takes connections and
never answers; each call alternates with a miss on the healthy server, so both see the same
machine), direct gRPC (gateway: a sequential loop alternating gateway and gRPC calls for
the overhead, then a bounded concurrent loop for requests/s). "server CPU" is the serving
process's CPU time per call (/proc), which a loaded machine inflates far less than latency.
"""

from __future__ import annotations

import os
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx
import psycopg
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import Row
from bench.cpu_calls import per_call_us
from bench.server import FerryServer
from ferry.db.engine import make_engine
from ferry.db.tenant import DEFAULT_SCHOOL_ID
from ferry.reports import versions
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


def _read_ok(res: psycopg.pq.abc.PGresult) -> int:
    """The rows of a version read; an error result stops the bench (no figure of it)."""
    if res.status != psycopg.pq.ExecStatus.TUPLES_OK:
        raise RuntimeError(res.error_message.decode(errors="replace"))
    return res.ntuples


def _load_avg() -> str:
    """The machine's 1-minute load average now: absolute latencies (the report goals are
    absolute, in ms) mean little without it on a shared machine."""
    return f"{os.getloadavg()[0]:.1f}"


def _p(ts: list[float], q: float) -> float:
    return ts[min(len(ts) - 1, int(q * len(ts)))] * 1000


def _ms(ts: list[float]) -> str:
    return f"p50 {_p(ts, 0.5):.2f} ms, p99 {_p(ts, 0.99):.2f} ms"


def _per_s(ts: list[float]) -> float:
    return 1 / statistics.median(ts)


def _alternating(calls: list[Callable[[int], object]], n: int, warm: int = 5,
                 before: Callable[[int], object] | None = None) -> list[list[float]]:  # fmt: skip
    """Sorted seconds of each of `calls`, run one after another for i in 0..n-1, so every
    one of them sees the same moment of a busy machine."""
    out: list[list[float]] = [[] for _ in calls]
    for i in range(-warm, n):
        for k, call in enumerate(calls):
            if before:
                before(i)
            t = time.perf_counter()
            call(i)
            if i >= 0:
                out[k].append(time.perf_counter() - t)
    return [sorted(ts) for ts in out]


def _load(make: Callable[[], Callable[[], object]], threads: int, total: int,
          seconds: float) -> tuple[float, int]:  # fmt: skip
    """A bounded concurrent load loop: `threads` clients, each with its own connection
    (`make()`), share `total` requests and stop after `seconds` whatever is left.
    Returns (requests/s, failed requests)."""
    left = [total]
    lock = threading.Lock()
    failed = [0]
    stop = time.monotonic() + seconds
    clients = [make() for _ in range(threads)]
    for c in clients:  # connected and warm before the clock starts
        c()

    def work(call: Callable[[], object]) -> None:
        while time.monotonic() < stop:
            with lock:
                if left[0] <= 0:
                    return
                left[0] -= 1
            try:
                call()
            except Exception:
                with lock:
                    failed[0] += 1

    pool = [threading.Thread(target=work, args=(c,)) for c in clients]
    t = time.perf_counter()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    done = total - max(0, left[0])
    return done / (time.perf_counter() - t), failed[0]


class BlackHole:
    """A port that takes connections and never answers: a hung or firewalled Redis, where
    every command waits for its full socket timeout."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1024)  # the kernel completes handshakes; nobody ever reads
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


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


def redis_cache_env() -> dict[str, str]:
    """A bench server's settings: reports cached in Redis under a prefix of this run's own
    (two runs on one Redis never read each other's entries), no export workers."""
    return {
        "FERRY_EXPORT_WORKERS": "0",
        "FERRY_REDIS_URL": REDIS_URL,
        "FERRY_PLUGINS_SERVICES_REPORTS_CACHE_BACKEND": "redis",
        "FERRY_PLUGINS_CACHES_REDIS_KEY_PREFIX": f"ferry-bench-{uuid.uuid4().hex[:8]}-",
    }


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    ids = _students(dsn, 120)
    env = redis_cache_env()
    prefix = env["FERRY_PLUGINS_CACHES_REDIS_KEY_PREFIX"]
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
        # The floor under any hit: the same server's health Check (no work; the filters run,
        # auth lets it through), and the data version read (ferry.reports.versions) that a
        # hit waits for under `versions: read` (with `auto` it takes them from memory), here
        # the same prepared statement sent from this process. Taken in turns, so the three
        # see the same moments of the machine.
        health = health_pb2_grpc.HealthStub(channel)
        pg = psycopg.connect(dsn, autocommit=True)
        pg.pgconn.prepare(versions._STAMP_NAME, versions._STAMP_PQ)  # as VersionReader does
        # $3, the school: the bench data is the default school's (a read without it was
        # an error answered at once, not the read a hit waits for).
        stamp_args = [versions.STUDENT.encode(), sid.encode(), str(DEFAULT_SCHOOL_ID).encode()]
        load_hits = _load_avg()
        hits, floor, reads = _alternating([
            lambda i: get(i, sid),
            lambda i: health.Check(health_pb2.HealthCheckRequest(), timeout=30),
            lambda i: _read_ok(pg.pgconn.exec_prepared(versions._STAMP_NAME, stamp_args)),
        ], n_hit)  # fmt: skip
        pg.close()
        assert get(0, sid).cached
        hit_cpu = per_call_us(server.proc.pid, lambda i: get(i, sid), n_hit)
        value = r.get(next(iter(r.scan_iter(prefix + "student:*")))) or b""
        r.set(prefix + "raw", value)
        raw = _times(lambda i: r.get(prefix + "raw"), n_hit)
        n_miss = 20 * repeat
        load_hits += " -> " + _load_avg()
        load_misses = _load_avg()
        misses = _times(get, n_miss, before=clear)
        load_misses += " -> " + _load_avg()
        engine = make_engine(url)
        settings = ReportSettings()

        def direct(i: int) -> object:
            with engine.connect() as conn:
                return student_report(conn, settings, ids[i % len(ids)], Scope(SEMESTER))

        inproc = _times(direct, n_miss)
        # The same hit from a replica that keeps no near entries: every hit reads Redis.
        far = FerryServer(url, workdir, services=("reports",),
                          env={**env, "FERRY_PLUGINS_SERVICES_REPORTS_CACHE_NEAR_BYTES": "0"})
        try:
            with grpc.insecure_channel(f"127.0.0.1:{far.port}") as far_ch:
                far_stub = reports_pb2_grpc.ReportsServiceStub(far_ch)
                far_md = (("authorization", f"Bearer {far.token(options_pb2.ROLE_OPERATOR)}"),)
                far_stub.GetStudentReport(req, metadata=far_md, timeout=30)  # fills Redis
                assert far_stub.GetStudentReport(req, metadata=far_md, timeout=30).cached
                far_hits = _times(
                    lambda i: far_stub.GetStudentReport(req, metadata=far_md, timeout=30), n_hit
                )
        finally:
            far.stop()
        rows.append(Row(
            "GetStudentReport cache hit (near cache, Redis behind), gRPC loopback", n_hit,
            _per_s(hits),
            "redis-py GET of the same bytes", _per_s(raw),
            0.0, f"{_ms(hits)}; raw GET {_ms(raw)}; hit is {_p(misses, .5) / _p(hits, .5):.0f}x "
            f"faster than a miss (p50); server CPU {hit_cpu:.0f} us/hit; the same server's "
            f"health Check p50 {_p(floor, .5):.2f} ms ({_p(misses, .5) / _p(floor, .5):.0f}x a "
            f"miss: the floor under any hit; hit - Check {_p(hits, .5) - _p(floor, .5):.2f} ms); "
            f"its version read alone (a prepared read from the bench, in turn) p50 "
            f"{_p(reads, .5):.2f} ms, p99 {_p(reads, .99):.2f} ms; load average {load_hits}",
            {"hit_p50_ms": _p(hits, .5), "health_p50_ms": _p(floor, .5),
             "hit_p99_ms": _p(hits, .99), "version_read_p50_ms": _p(reads, .5)},
        ))  # fmt: skip
        rows.append(Row(
            "GetStudentReport cache hit from Redis (near cache off), gRPC loopback", n_hit,
            _per_s(far_hits), "redis-py GET of the same bytes", _per_s(raw),
            0.0, f"{_ms(far_hits)}; raw GET {_ms(raw)}; "
            f"{_p(misses, .5) / _p(far_hits, .5):.0f}x faster than a miss (p50)",
        ))  # fmt: skip
        rows.append(Row(
            "GetStudentReport miss (computed), gRPC loopback", n_miss, _per_s(misses),
            "student_report() in-process, no gRPC, no cache", _per_s(inproc),
            0.0, f"{_ms(misses)}; in-process {_ms(inproc)}; {SEMESTER}; load average "
            f"{load_misses}",
            {"miss_p50_ms": _p(misses, .5), "inproc_p50_ms": _p(inproc, .5)},
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
        gw, direct_hits = _alternating([via_gw, lambda i: get(i, sid)], n_gw, warm=20)
        gw_cpu = per_call_us(server.proc.pid, via_gw, n_gw)

        def gw_client() -> Callable[[], object]:
            c = httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}",
                             headers={"authorization": f"Bearer {tok}"})  # fmt: skip
            return lambda: c.post("/api/v1/reports/student-performance",
                                  json=body).raise_for_status()  # fmt: skip

        opened: list[grpc.Channel] = []

        def grpc_client() -> Callable[[], object]:
            opened.append(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
            s = reports_pb2_grpc.ReportsServiceStub(opened[-1])
            return lambda: s.GetStudentReport(req, metadata=md, timeout=30)

        threads, total = 4, 1000 * repeat
        gw_rate, gw_failed = _load(gw_client, threads, total, 60)
        rpc_rate, rpc_failed = _load(grpc_client, threads, total, 60)
        for ch in opened:
            ch.close()
        rows.append(Row(
            f"gateway via httpx clients, POST /api/v1/reports/student-performance (cached), "
            f"{threads} clients",
            total, gw_rate, f"direct gRPC GetStudentReport (cached), {threads} clients",
            rpc_rate, server.rss_mb(),
            f"bounded loop ({total} requests, at most 60 s; {gw_failed + rpc_failed} failed); "
            f"sequential: gateway {_ms(gw)} ({_per_s(gw):.0f}/s), gRPC {_ms(direct_hits)}, "
            f"p50 overhead {_p(gw, .5) - _p(direct_hits, .5):.2f} ms; server CPU "
            f"{gw_cpu:.0f} us/request; keep-alive",
            {"overhead_p50_ms": _p(gw, .5) - _p(direct_hits, .5), "gateway_p50_ms": _p(gw, .5)},
        ))  # fmt: skip
        http.close()
        engine.dispose()

        # Redis unreachable: every call computes; none may fail. Each outage call
        # alternates with a miss on the healthy server above (same moment, same load).
        hole = BlackHole()
        outages = {
            "closed port": FerryServer(url, workdir, services=("reports",),
                                       env={**env, "FERRY_REDIS_URL": "redis://127.0.0.1:1/0"}),
            "black hole": FerryServer(url, workdir, services=("reports",), env={
                **env, "FERRY_REDIS_URL": f"redis://127.0.0.1:{hole.port}/0"}),
            # The same, with the auth filter's revocation refresh (which reads Redis on a
            # call's path every auth.revocation_refresh_seconds) every 300 s instead of 10:
            # what the report cache alone costs.
            "black hole, revocations refreshed every 300 s": FerryServer(
                url, workdir, services=("reports",), env={
                    **env, "FERRY_REDIS_URL": f"redis://127.0.0.1:{hole.port}/0",
                    "FERRY_AUTH_REVOCATION_REFRESH_SECONDS": "300"}),
        }  # fmt: skip
        errors = dict.fromkeys(outages, 0)
        calls: list[Callable[[int], object]] = [get]
        channels = []
        for name, down in outages.items():
            ch = grpc.insecure_channel(f"127.0.0.1:{down.port}")
            channels.append(ch)
            down_stub = reports_pb2_grpc.ReportsServiceStub(ch)
            down_md = (("authorization", f"Bearer {down.token(options_pb2.ROLE_OPERATOR)}"),)

            def get_down(i: int, s: object = down_stub, m: object = down_md,
                         name: str = name) -> None:  # fmt: skip
                try:
                    q = pb.GetStudentReportRequest(student_id=ids[i % len(ids)],
                                                   semester=SEMESTER)  # fmt: skip
                    s.GetStudentReport(q, metadata=m, timeout=30)  # type: ignore[attr-defined]
                except grpc.RpcError:
                    errors[name] += 1

            calls.append(get_down)

        def clear_up(_: int) -> None:
            clear(0)

        try:
            # warm: the first calls of each outage server open its breaker (a black-holed
            # Redis makes each of them wait for the socket timeout and its retry).
            timed = _alternating(calls, n_miss * 2, warm=5, before=clear_up)
        finally:
            for ch in channels:
                ch.close()
            for down in outages.values():
                down.stop()
            hole.close()
        miss_up = timed[0]
        for (name, _), outage in zip(outages.items(), timed[1:], strict=True):
            rows.append(Row(
                f"GetStudentReport with Redis unreachable ({name})", len(outage),
                _per_s(outage), "the miss with Redis up, alternating", _per_s(miss_up), 0.0,
                f"{_ms(outage)}; miss {_ms(miss_up)}; p99 "
                f"{_p(outage, .99) - _p(miss_up, .99):+.2f} ms vs the miss; "
                f"{sum(t > _p(miss_up, .99) / 1000 for t in outage)} calls over the miss p99; "
                f"{errors[name]} errors (warm-up included)",
            ))  # fmt: skip
    finally:
        channel.close()
        server.stop()
        keys = list(r.scan_iter(prefix + "*"))
        if keys:
            r.delete(*keys)
    r.close()
    return rows
