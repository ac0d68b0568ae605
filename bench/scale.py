"""How cost grows with the data: the streaming paths at 100k, 1M and 10M records
(`python -m bench --scale large` seeds ten semesters of the bench shape, ~10M records, by
COPY; `--sizes` picks the sizes, and at the bench scale 100k and 1M are what there is).

Per size and path, Ferry's records/s and peak RSS beside its raw baseline's, each export
in a fresh process (bench.formats' children: VmHWM of that process alone), and the stream
and download through a fresh `ferry serve export` process per size (its VmHWM):

- csv and xlsx entity exports of N attendance rows vs a bare csv.writer / xlsxwriter loop;
- StreamSession and DownloadSession json of a whole scope vs a psycopg server-side cursor
  over the same SQL: one semester (1M) and the whole database (scope all: 10M at the large
  scale); 100k is a semester of a scratch copy holding a tenth of one (bench.bundle's).

Import, re-import, backup and restore at these sizes are not measured here (they run at
1M in bench.imports and bench.backup).

Each row is printed (flushed) as soon as it is measured: a large run takes hours on a
loaded machine, and one stopped part-way still shows what it measured.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import psycopg

from bench.bundle import drop_scratch, scratch_copy
from bench.common import Row, point, print_table, rate, raw_rows
from bench.formats import _child_rss
from bench.server import FerryServer
from ferry.v1 import export_pb2, export_pb2_grpc

SEMESTER = "2026-fall"


def stream(port: int, token: str, semester: str | None) -> int:
    n = 0
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.StreamSessionRequest(
            semester=semester or "", scope="semester" if semester else "all"
        )
        for msg in stub.StreamSession(req, timeout=7200,
                                      metadata=[("authorization", f"Bearer {token}")]):  # fmt: skip
            if msg.chunk.HasField("records"):
                for _field, values in msg.chunk.records.ListFields():
                    n += len(values)
    return n


def download(port: int, token: str, semester: str | None, total: int) -> int:
    """Bytes of the json bundle received; returns `total` (its records) for the rate."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.DownloadSessionRequest(
            semester=semester or "", bundle_format="json", scope="semester" if semester else "all"
        )
        size = 0
        md = [("authorization", f"Bearer {token}")]
        for msg in stub.DownloadSession(req, timeout=7200, metadata=md):
            size += len(msg.chunk.data)
    assert size > 0
    return total


def _sessions(url: str, dsn: str, workdir: Path, semester: str | None, repeat: int) -> list[Row]:
    """StreamSession and DownloadSession json of one scope, each in a fresh server."""
    n_raw, raw = rate(lambda: raw_rows(dsn, semester), repeat)
    what = f"semester {semester}" if semester else "the whole database (scope all)"
    rows = []
    for path in ("StreamSession", "DownloadSession json"):
        server = FerryServer(url, workdir)
        try:
            port, tok = server.port, server.token()
            if path == "StreamSession":
                n, t = rate(lambda p=port, k=tok: stream(p, k, semester), repeat)
                if n != n_raw:
                    raise AssertionError(f"StreamSession sent {n}, the cursor read {n_raw}")
            else:
                n, t = rate(lambda p=port, k=tok: download(p, k, semester, n_raw), repeat)
            rss = server.rss_mb()
        finally:
            server.stop()
        point(f"{path} (scale)", n, t.median, raw.median, rss)
        rows.append(Row(
            f"{path} at {n:,} records, {what} (scale)", n, t.median,
            "psycopg server-side cursor -> tuples (same SQL)", raw.median, rss,
            "; ".join(s for s in (t.spread_note(), raw.spread_note(), "RSS = server VmHWM") if s),
            {"size": n, "scale_rss_mb": rss},
        ))  # fmt: skip
        _progress(rows[-1])
    return rows


def _progress(row: Row) -> None:
    """Print `row` now (the table at the end repeats it)."""
    print_table([row])
    print(flush=True)


def run(url: str, dsn: str, workdir: Path, repeat: int, sizes: tuple[int, ...]) -> list[Row]:
    rows: list[Row] = []
    for fmt, bare in (("csv", "csv.writer"), ("xlsx", "xlsxwriter constant_memory")):
        for n in sizes:
            ferry = _child_rss(fmt, n, dsn, workdir)
            raw = _child_rss(fmt, n, dsn, workdir, raw=True)
            got = int(ferry["rows"])
            point(f"{fmt} export (scale)", got, got / ferry["seconds"],
                  raw["rows"] / raw["seconds"], ferry["rss_mb"], raw["rss_mb"])  # fmt: skip
            rows.append(Row(
                f"{fmt} export at {got:,} attendance rows (scale, 1 run)", got,
                got / ferry["seconds"], f"bare {bare} loop, same rows",
                raw["rows"] / raw["seconds"], ferry["rss_mb"],
                f"baseline peak RSS {raw['rss_mb']:.0f} MB",
                {"size": got, "scale_rss_mb": ferry["rss_mb"]},
            ))  # fmt: skip
            _progress(rows[-1])
    with psycopg.connect(dsn) as conn:
        semesters = conn.execute("SELECT count(DISTINCT semester) FROM courses").fetchone()
    if min(sizes) < 1_000_000:  # a semester of a tenth of the size, in a scratch copy
        small_url, small_dsn = scratch_copy(url)
        try:
            rows += _sessions(small_url, small_dsn, workdir, SEMESTER, repeat)
        finally:
            drop_scratch()
    rows += _sessions(url, dsn, workdir, SEMESTER, repeat)
    if semesters and semesters[0] > 1 and max(sizes) > 1_000_000:
        rows += _sessions(url, dsn, workdir, None, repeat)
    return rows
