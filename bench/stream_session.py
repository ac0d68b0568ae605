"""StreamSession through gRPC vs a psycopg server-side cursor over the same SQL.

The server is a real `ferry serve export` process on a loopback port; the client is this
process, counting records as a Python gRPC client receives them. The baseline runs the
exact queries StreamSession runs (compiled from the dataset spec) through a psycopg named
cursor into tuples.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg
from sqlalchemy.dialects import postgresql

from bench.common import Row, rate
from bench.server import FerryServer
from ferry.datasets.query import export_query
from ferry.datasets.school import SCHOOL
from ferry.v1 import export_pb2, export_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]


def raw_cursor_rows(dsn: str, semester: str) -> int:
    """Every row StreamSession would send, read with server-side cursors into tuples."""
    n = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")  # as StreamSession does
        for entity in SCHOOL.in_order():
            query, _ = export_query(SCHOOL, entity, semester, False)
            sql = str(
                query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            with conn.cursor(name=f"raw_{entity.name}") as cur:
                cur.itersize = 2000
                cur.execute(sql)
                for _row in cur:
                    n += 1
    return n


def grpc_records(port: int, token: str, semester: str) -> int:
    """Records received by a Python gRPC client streaming the semester."""
    n = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.StreamSessionRequest(semester=semester)
        for msg in stub.StreamSession(
            req, timeout=3600, metadata=[("authorization", f"Bearer {token}")]
        ):
            chunk = msg.chunk
            if chunk.HasField("records"):
                for _field, values in chunk.records.ListFields():
                    n += len(values)
    return n


def run(url: str, dsn: str, semester: str, workdir: Path, repeat: int) -> Row:
    n_raw, raw = rate(lambda: raw_cursor_rows(dsn, semester), repeat)
    server = FerryServer(url, workdir)
    try:
        tok = server.token()
        n, ferry = rate(lambda: grpc_records(server.port, tok, semester), repeat)
        rss = server.rss_mb()
    finally:
        server.stop()
    if n != n_raw:
        raise AssertionError(f"StreamSession sent {n} records, the raw cursor read {n_raw}")
    notes = [s for s in (ferry.spread_note(), raw.spread_note()) if s]
    return Row(
        f"StreamSession via gRPC, semester {semester}",
        n,
        ferry.median,
        "psycopg server-side cursor -> tuples (same SQL)",
        raw.median,
        rss,
        "; ".join(notes) + ("; " if notes else "") + "RSS = server VmHWM",
    )
