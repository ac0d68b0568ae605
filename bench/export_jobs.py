"""CSV entity export jobs end to end through gRPC vs a raw cursor -> csv.writer loop.

Ferry: StartExport (students, then grades) on a real `ferry serve export` process, wait
for the job through WatchExportJob, then DownloadExport the file to disk: what a CronJob
or a browser pays. Baseline: the exact SQL the job runs (compiled from the same plan)
through a psycopg server-side cursor into csv.writer on a local file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import grpc
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from bench.common import Row, rate
from bench.server import FerryServer
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.export_jobs.query import ExportRequest, plan_export
from ferry.v1 import export_pb2 as pb
from ferry.v1 import export_pb2_grpc

TYPES = ("students", "grades")


def _sql(url: str, export_type: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            plan = plan_export(conn, SCHOOL, ExportRequest(export_type), 10_000_000)
    finally:
        engine.dispose()
    return str(
        plan.rows.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    )


def raw_csv(dsn: str, sqls: dict[str, str], workdir: Path) -> int:
    """Rows written by a bare server-side cursor -> csv.writer loop, per type."""
    n = 0
    with psycopg.connect(dsn) as conn:
        for name, sql in sqls.items():
            with (
                conn.cursor(name=f"raw_{name}") as cur,
                (workdir / f"raw_{name}.csv").open("w", newline="", encoding="utf-8") as f,
            ):
                cur.itersize = 2000
                cur.execute(sql)
                w = csv.writer(f)
                w.writerow([d.name for d in cur.description or []])
                for row in cur:
                    w.writerow(row)
                    n += 1
    return n


def ferry_csv(port: int, token: str, workdir: Path) -> int:
    """Rows exported by csv jobs, waited for and downloaded through gRPC."""
    md: tuple[tuple[str, str | bytes], ...] = (("authorization", f"Bearer {token}"),)
    n = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        for name in TYPES:
            job = stub.StartExport(
                pb.StartExportRequest(export_type=name, format="csv"), metadata=md, timeout=60
            ).job
            for update in stub.WatchExportJob(
                pb.WatchExportJobRequest(job_id=job.id), metadata=md, timeout=3600
            ):
                job = update.job
            if job.status != pb.EXPORT_JOB_STATUS_COMPLETED:
                raise AssertionError(f"{name} export ended {job.status}: {job.error_message}")
            with (workdir / f"ferry_{name}.csv").open("wb") as f:
                for msg in stub.DownloadExport(
                    pb.DownloadExportRequest(job_id=job.id), metadata=md, timeout=3600
                ):
                    f.write(msg.chunk.data)
            n += job.total_records
    return n


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """One row: csv jobs (students + grades) vs the raw baseline."""
    sqls = {name: _sql(url, name) for name in TYPES}
    n_raw, raw = rate(lambda: raw_csv(dsn, sqls, workdir), repeat)
    storage = workdir / "exports"
    server = FerryServer(
        url,
        workdir,
        env={
            "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(storage),
            "FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR": str(workdir / "archive"),
            "FERRY_EXPORT_POLL_SECONDS": "0.1",
        },
    )
    try:
        tok = server.token()
        n, ferry = rate(lambda: ferry_csv(server.port, tok, workdir), repeat)
        rss = server.rss_mb()
    finally:
        server.stop()
    if n != n_raw:
        raise AssertionError(f"export jobs wrote {n} rows, the raw loop {n_raw}")
    # The jobs this benchmark made are not the bench database's business.
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM export_jobs"))
    engine.dispose()
    notes = [s for s in (ferry.spread_note(), raw.spread_note()) if s]
    return [
        Row(
            "csv export jobs (students + grades), start -> wait -> download via gRPC",
            n,
            ferry.median,
            "psycopg server-side cursor -> csv.writer (same SQL)",
            raw.median,
            rss,
            "; ".join([*notes, "RSS = server VmHWM"]),
        )
    ]
