"""Semester bundles through DownloadSession vs a psycopg server-side cursor read.

A real `ferry serve export` process writes the bundle file; the client in this process
receives its FileChunks and checks the final sha256. The baseline reads the same rows
with the same SQL through psycopg named cursors into tuples (bench.stream_session). Peak
RSS is the server's VmHWM; each size gets its own server process, so the peaks of the
~100k and ~1M semesters are measured apart. The ~100k semester lives in a scratch copy of
the bench database in which nine courses in ten were moved to another semester.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import grpc
import psycopg

from bench.common import PG_ADMIN, Row, Timing, point, rate, vm_hwm_mb
from bench.server import FerryServer
from bench.stream_session import raw_cursor_rows
from ferry.bundle.semesters import recount
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.v1 import export_pb2, export_pb2_grpc

SEMESTER = "2026-fall"
SCRATCH = "ferry_bench_bundle_small"


def download(port: int, token: str, semester: str, fmt: str) -> int:
    """Bytes of the bundle file received; raises when the sha256 does not match."""
    digest = hashlib.sha256()
    size = 0
    sha = ""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.DownloadSessionRequest(semester=semester, bundle_format=fmt)
        for msg in stub.DownloadSession(
            req, timeout=3600, metadata=[("authorization", f"Bearer {token}")]
        ):
            digest.update(msg.chunk.data)
            size += len(msg.chunk.data)
            sha = msg.chunk.sha256 or sha
    if sha != digest.hexdigest():
        raise AssertionError(f"{fmt} bundle sha256 mismatch")
    return size


def scratch_copy(source_url: str) -> tuple[str, str]:
    """(url, dsn) of a copy of the bench database whose SEMESTER holds a tenth of it."""
    source = source_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SCRATCH}" TEMPLATE "{source}"')
    dsn = PG_ADMIN.rsplit("/", 1)[0] + f"/{SCRATCH}"
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "UPDATE courses SET semester = '2025-fall' WHERE semester = %s AND id %% 10 <> 0",
            (SEMESTER,),
        )
        conn.execute("ANALYZE")
    url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(url)
    with engine.begin() as c:  # ListSemesters' kept counts follow the courses moved
        recount(c, SCHOOL, None)
    engine.dispose()
    return url, dsn


def drop_scratch() -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


def _serve(
    url: str, workdir: Path, n: int, formats: list[tuple[str, int]]
) -> tuple[dict[str, tuple[Timing, int]], float]:
    """Each (format, repeats) through one fresh server: timings, sizes and its VmHWM."""
    server = FerryServer(url, workdir)
    out: dict[str, tuple[Timing, int]] = {}
    try:
        tok = server.token()
        for fmt, times in formats:
            sizes: list[int] = []

            def one(fmt: str = fmt, sizes: list[int] = sizes) -> int:
                sizes.append(download(server.port, tok, SEMESTER, fmt))
                return n  # the file holds exactly the rows the baseline read

            _, timing = rate(one, times)
            out[fmt] = (timing, sizes[-1])
        rss = vm_hwm_mb(server.proc.pid)
    finally:
        server.stop()
    return out, rss


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """json bundle of the whole bench semester vs the raw cursor, the other formats once,
    and the server's peak RSS for a ~100k and the ~1M semester (json, own processes)."""
    base = "psycopg server-side cursor -> tuples (same SQL)"
    n, raw = rate(lambda: raw_cursor_rows(dsn, SEMESTER), repeat)
    json_big, rss_big = _serve(url, workdir, n, [("json", repeat)])
    others, rss_others = _serve(url, workdir, n, [("jsonl", 1), ("tar.gz", 1)])
    small_url, small_dsn = scratch_copy(url)
    try:
        n_small, raw_small = rate(lambda: raw_cursor_rows(small_dsn, SEMESTER), 1)
        json_small, rss_small = _serve(small_url, workdir, n_small, [("json", 1)])
        xlsx_small, rss_xlsx = _serve(small_url, workdir, n_small, [("xlsx", 1)])
    finally:
        drop_scratch()

    point("DownloadSession json", n_small, json_small["json"][0].median, raw_small.median,
          rss_small)  # fmt: skip
    point("DownloadSession json", n, json_big["json"][0].median, raw.median, rss_big)
    rows: list[Row] = []
    timing, size = json_big["json"]
    notes = [s for s in (timing.spread_note(), raw.spread_note()) if s]
    rows.append(
        Row(
            f"DownloadSession json bundle via gRPC, semester {SEMESTER}",
            n,
            timing.median,
            base,
            raw.median,
            rss_big,
            "; ".join(
                [
                    *notes,
                    f"{size / 1e6:,.0f} MB file, sha256 verified",
                    f"RSS = server VmHWM; {rss_small:.0f} MB for {n_small:,} records",
                ]
            ),
        )
    )
    for fmt, (timing, size) in others.items():
        rows.append(
            Row(
                f"DownloadSession {fmt} bundle, semester {SEMESTER} (1 run)",
                n,
                timing.median,
                base,
                raw.median,
                rss_others,
                f"{size / 1e6:,.0f} MB file; RSS over jsonl + tar.gz",
            )
        )
    timing, size = json_small["json"]
    rows.append(
        Row(
            "DownloadSession json bundle, ~100k-record semester (scratch copy, 1 run)",
            n_small,
            timing.median,
            base,
            raw_small.median,
            rss_small,
            f"peak RSS {rss_small:.0f} MB vs {rss_big:.0f} MB for {n:,} records",
        )
    )
    timing, size = xlsx_small["xlsx"]
    rows.append(
        Row(
            "DownloadSession xlsx bundle, ~100k-record semester (scratch copy, 1 run)",
            n_small,
            timing.median,
            base,
            raw_small.median,
            rss_xlsx,
            f"{size / 1e6:,.0f} MB file",
        )
    )
    return rows
