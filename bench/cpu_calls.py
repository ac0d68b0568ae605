"""Server CPU per report call, for `python -m bench.ab BASE --cpu`.

Run by each side's own Python with that side's tree first on PYTHONPATH, so `bench.server`
and `ferry` are the side's: `python bench/cpu_calls.py DATABASE_URL N_MISS N_HIT`. Starts
the reports service on the seeded bench database, and prints one JSON line: the server's
CPU seconds (utime + stime from /proc, so time spent waiting for a busy machine's cores is
not counted) per cache miss, per cache hit and per health Check, in microseconds.

Why CPU rather than wall time: "ratios stay within 5%" needs a figure that a loaded machine
does not move by more than 5%. Wall-clock rows of 20 misses on a shared machine spread by
2x from run to run; a process's own CPU time per call spreads by a few percent.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.server import FerryServer
from ferry.v1 import options_pb2, reports_pb2_grpc
from ferry.v1 import reports_pb2 as pb

SEMESTER = "2026-fall"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def per_call_us(pid: int, call: Callable[[int], object], n: int) -> float:
    start = cpu_seconds(pid)
    for i in range(n):
        call(i)
    return (cpu_seconds(pid) - start) / n * 1e6


def seeded(url: str) -> None:
    """The small demo dataset in database `url`, made if it holds no students yet."""
    from psycopg import sql

    from ferry.db import migrate
    from ferry.db.engine import make_engine
    from ferry.demo.seed import Scale, seed

    server, name = url.replace("postgresql+psycopg://", "postgresql://", 1).rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        held = conn.exec_driver_sql("SELECT count(*) FROM students").scalar()
    if not held:
        seed(engine, Scale("small"))
    engine.dispose()


def main() -> None:
    url, n_miss, n_hit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seeded(url)
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "SELECT DISTINCT s.student_id FROM students s JOIN enrollments e"
                " ON e.student_ref = s.id JOIN courses c ON c.id = e.course_ref"
                " WHERE c.semester = %s AND s.deleted_at IS NULL ORDER BY 1 LIMIT 200",
                (SEMESTER,),
            )
        ]
    # The in-process cache (no Redis): the figure is Ferry's own CPU, not redis-py's.
    env = {"FERRY_EXPORT_WORKERS": "0", "FERRY_REDIS_URL": ""}
    with tempfile.TemporaryDirectory() as workdir:
        server = FerryServer(url, Path(workdir), services=("reports",), env=env)
        try:
            md = (("authorization", f"Bearer {server.token(options_pb2.ROLE_OPERATOR)}"),)
            channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
            stub = reports_pb2_grpc.ReportsServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)

            def get(i: int) -> object:
                rq = pb.GetStudentReportRequest(student_id=ids[i % len(ids)], semester=SEMESTER)
                return stub.GetStudentReport(rq, metadata=md, timeout=60)

            def clear(_: int) -> object:
                return stub.InvalidateCache(pb.InvalidateCacheRequest(), metadata=md, timeout=60)

            def miss(i: int) -> object:
                clear(i)
                return get(i)

            for i in range(20):  # warm: connections, prepared statements, imports
                miss(i)
            pid = server.proc.pid
            clears = per_call_us(pid, clear, n_miss)
            misses = per_call_us(pid, miss, n_miss) - clears
            get(0)
            hits = per_call_us(pid, lambda i: get(0), n_hit)
            checks = per_call_us(
                pid, lambda i: health.Check(health_pb2.HealthCheckRequest(), timeout=30), n_hit
            )
            channel.close()
        finally:
            server.stop()
    print(json.dumps({"miss_us": misses, "hit_us": hits, "check_us": checks}))


if __name__ == "__main__":
    main()
