"""ListSemesters with its counts, over gRPC loopback to one `ferry serve export` process on
the bench dataset: p50 and p99 beside the same server's health Check (the floor under any
call: the filters run, auth lets it through), and what counting the same numbers in plain
SQL costs (psycopg, the three count queries per semester ListSemesters once ran), so the
gain from keeping the counts with the data (scope_counts) is visible in the same run."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.common import Row
from bench.server import FerryServer
from ferry.v1 import export_pb2, export_pb2_grpc, options_pb2

# The counts ListSemesters shows, counted: what each call did before scope_counts.
PLAIN = (
    "SELECT c.semester, count(*), count(DISTINCT e.student_ref) FROM enrollments e "
    "JOIN courses c ON c.id = e.course_ref JOIN students s ON s.id = e.student_ref "
    "WHERE e.deleted_at IS NULL AND c.deleted_at IS NULL AND s.deleted_at IS NULL "
    "GROUP BY c.semester"
)


def _alternating(calls: list[Callable[[], object]], n: int, warm: int = 10) -> list[list[float]]:
    """Sorted seconds of each call, run in turn, so all see the same moment of the machine."""
    out: list[list[float]] = [[] for _ in calls]
    for i in range(-warm, n):
        for k, call in enumerate(calls):
            t = time.perf_counter()
            call()
            if i >= 0:
                out[k].append(time.perf_counter() - t)
    return [sorted(ts) for ts in out]


def _p(ts: list[float], q: float) -> float:
    return ts[min(len(ts) - 1, int(q * len(ts)))] * 1000


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    server = FerryServer(url, workdir, services=("export",), env={"FERRY_EXPORT_WORKERS": "0"})
    md = (("authorization", f"Bearer {server.token(options_pb2.ROLE_VIEWER)}"),)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel, psycopg.connect(
            dsn, autocommit=True
        ) as pg:
            stub = export_pb2_grpc.ExportServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            req = export_pb2.ListSemestersRequest()
            listed = stub.ListSemesters(req, metadata=md, timeout=30).semesters
            counted = {s: (e, n) for s, e, n in pg.execute(PLAIN).fetchall()}
            for s in listed:  # the numbers the bench reads are the exact ones
                assert counted[s.name] == (s.enrollment_count, s.student_count), s.name
            n = 200 * repeat
            lists, checks = _alternating(
                [
                    lambda: stub.ListSemesters(req, metadata=md, timeout=30),
                    lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=30),
                ],
                n,
            )
            plain = _alternating([lambda: pg.execute(PLAIN).fetchall()], max(5, n // 20), 2)[0]
        rss = server.rss_mb()
    finally:
        server.stop()
    p50 = _p(lists, 0.5)
    return [
        Row(
            f"ListSemesters with exact counts ({len(listed)} semester(s)), gRPC loopback",
            n,
            1000 / p50,
            "the same server's health Check (p50 as 1/s)",
            1000 / _p(checks, 0.5),
            rss,
            f"p50 {p50:.2f} ms, p99 {_p(lists, 0.99):.2f} ms; health Check p50 "
            f"{_p(checks, 0.5):.2f} ms; counting them in plain SQL instead: p50 "
            f"{_p(plain, 0.5):.1f} ms",
            {"p50_ms": p50, "p99_ms": _p(lists, 0.99), "plain_count_p50_ms": _p(plain, 0.5)},
        )
    ]
