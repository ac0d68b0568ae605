"""Semester bundles through DownloadSession vs a psycopg server-side cursor read.

Beside them, the tar.gz writer's choices (gzip level, deflate on a thread or inline,
bytes per compressor call) measured in this process on the same semester
(`targz_variants`; what was chosen and why: ferry/bundle/formats/targz.py's docstring).

A real `ferry serve export` process writes the bundle file; the client in this process
receives its FileChunks and checks the final sha256. The baseline reads the same rows
with the same SQL through psycopg named cursors into tuples (bench.stream_session). Peak
RSS is the server's VmHWM; each size gets its own server process, so the peaks of the
~100k and ~1M semesters are measured apart. The ~100k semester lives in a scratch copy of
the bench database in which nine courses in ten were moved to another semester.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import time
from collections.abc import Generator
from contextlib import closing
from pathlib import Path
from typing import IO, Any, cast

import grpc
import psycopg

from bench.common import PG_ADMIN, Row, Timing, point, rate, template_copy, vm_hwm_mb
from bench.server import FerryServer
from bench.stream_session import raw_cursor_rows
from ferry.bundle.bundlefile import FETCH_AHEAD
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Event
from ferry.bundle.formats.jsonl import JsonlBundle
from ferry.bundle.formats.targz import FEED_BYTES, GZIP_LEVEL, TarGzBundle
from ferry.bundle.pipe import chunks
from ferry.bundle.scan import SessionRequest
from ferry.bundle.semesters import recount
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.v1 import export_pb2, export_pb2_grpc

SEMESTER = "2026-fall"
# Named after FERRY_BENCH_DB, so two runs on one server never drop each other's copy.
SCRATCH = os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_bundle_small"
# tar.gz writer variants measured in this process (targz_variants): the default first.
TARGZ_VARIANTS: list[tuple[str, dict[str, Any]]] = [
    (f"level {GZIP_LEVEL}, deflate on a thread, {FEED_BYTES // 1024} KiB per call", {}),
    (f"level {GZIP_LEVEL}, inline (one thread)", {"threaded": False}),
    ("level 6, deflate on a thread", {"level": 6}),
    ("level 6, inline", {"level": 6, "threaded": False}),
    ("level 1, thread, 64 KiB per call", {"feed_bytes": 64 * 1024}),
    ("level 1, thread, 4 MiB per call", {"feed_bytes": 4 * 1024 * 1024}),
]


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
            chunk = msg.chunk
            data = chunk.data  # each read of a bytes field copies it: read it once
            digest.update(data)
            size += len(data)
            sha = chunk.sha256 or sha
    if sha != digest.hexdigest():
        raise AssertionError(f"{fmt} bundle sha256 mismatch")
    return size


def scratch_copy(source_url: str) -> tuple[str, str]:
    """(url, dsn) of a copy of the bench database whose SEMESTER holds a tenth of it."""
    dsn = template_copy(source_url, SCRATCH)
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


class SpoolThenGzip:
    """The tar.gz writer before issue 27's third pass (kept here as the `before` of the
    variants): every member spooled uncompressed while the records are read, then gzip
    (level `level`, the writer's thread) over the whole tar after the read."""

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        self.level = level

    def write(self, events: Any, out: IO[bytes]) -> None:
        import gzip
        import io
        import tarfile
        import tempfile

        import orjson

        from ferry.bundle.formats.base import Batch
        from ferry.bundle.formats.common import DIGEST_OPTS, JSON_OPTS, Encoder, metadata_dict

        enc = Encoder()
        it = iter(events)
        header = enc.start(next(it, None))
        spools: dict[str, tuple[Any, Any]] = {}
        try:
            for event in it:
                if not isinstance(event, Batch):
                    break
                encoded = [orjson.dumps(r, option=DIGEST_OPTS) for r in event.records]
                enc.batch(event, b",".join(encoded))
                if event.entity not in spools:
                    spool = tempfile.SpooledTemporaryFile(4 * 1024 * 1024)  # noqa: SIM115
                    spools[event.entity] = (spool, hashlib.sha256())
                f, h = spools[event.entity]
                data = b"".join(r + b"\n" for r in encoded)
                f.write(data)
                h.update(data)
            members = []
            for entity in enc.order():
                f, h = spools.get(entity) or (io.BytesIO(), hashlib.sha256())
                members.append({"name": f"{entity}.jsonl", "entity": entity,
                                "records": enc.counts.get(entity, 0), "bytes": f.tell(),
                                "sha256": h.hexdigest()})  # fmt: skip
            manifest = {"format_version": header.metadata.format_version,
                        "metadata": metadata_dict(header), "members": members,
                        **enc.trailer()}  # fmt: skip
            mtime = int(header.metadata.exported_at.seconds) or int(time.time())

            def add(tar: Any, name: str, f: Any, size: int) -> None:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = size, mtime, 0o644
                tar.addfile(info, f)

            with (
                gzip.GzipFile(fileobj=out, mode="wb", compresslevel=self.level, mtime=mtime) as gz,
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                body = orjson.dumps(manifest, option=JSON_OPTS | orjson.OPT_INDENT_2)
                add(tar, "manifest.json", io.BytesIO(body), len(body))
                for m in members:
                    f = spools[m["entity"]][0] if m["entity"] in spools else io.BytesIO()
                    f.seek(0)
                    add(tar, m["name"], f, m["bytes"])
        finally:
            for f, _ in spools.values():
                f.close()


def _write_rate(url: str, writer: Any) -> tuple[float, int]:
    """(seconds, bytes) of the bench semester's bundle written by `writer` the way
    DownloadSession does (session_events reading ahead, the database's JSON for a writer
    that takes it, a writer thread, 1 MiB pieces), in this process, without gRPC."""
    engine = make_engine(url)
    req = SessionRequest(semester=SEMESTER, batch_size=2000)
    now = dt.datetime.now(dt.UTC)
    counted = 0

    # A writer that takes the database's JSON gets it, as DownloadSession gives it.
    lines = bool(getattr(writer, "writes_lines", False))

    def write(out: IO[bytes]) -> None:
        events = session_events(engine, SCHOOL, req, now, FETCH_AHEAD, lines)
        with closing(cast(Generator[Event], events)) as ev:
            writer.write(ev, out)

    t = time.perf_counter()
    for piece in chunks(write):
        counted += len(piece)
    seconds = time.perf_counter() - t
    engine.dispose()
    return seconds, counted


def targz_variants(url: str, dsn: str, n: int) -> list[Row]:
    """The tar.gz writer's choices measured on the bench semester in this process: gzip
    level 1 vs 6, deflating on a thread vs inline, bytes per compressor call; beside
    jsonl (the same lines, no compression) and the raw read, interleaved."""
    base = "psycopg server-side cursor -> tuples (same SQL)"
    out: list[Row] = []
    raw_rates: list[float] = []
    jsonl_s, jsonl_bytes = 0.0, 0
    variants: list[tuple[str, Any]] = [(x, TarGzBundle(None, **kw)) for x, kw in TARGZ_VARIANTS]
    variants.insert(1, (f"before: spool, then gzip {GZIP_LEVEL} after the read", SpoolThenGzip()))
    variants.append(("before, at level 6", SpoolThenGzip(6)))
    for label, writer in variants:
        t = time.perf_counter()
        raw_cursor_rows(dsn, SEMESTER)
        raw_rates.append(n / (time.perf_counter() - t))
        seconds, size = _write_rate(url, writer)
        if not jsonl_s:
            jsonl_s, jsonl_bytes = _write_rate(url, JsonlBundle())
        out.append(
            Row(
                f"tar.gz writer in-process, {label}",
                n,
                n / seconds,
                base,
                raw_rates[-1],
                0.0,
                f"{size / 1e6:,.0f} MB ({jsonl_bytes / max(size, 1):.1f}:1); jsonl writer "
                f"{n / jsonl_s:,.0f}/s ({jsonl_bytes / 1e6:,.0f} MB) (1 run)",
            )
        )
    return out


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """json bundle of the whole bench semester vs the raw cursor, the other formats once,
    and the server's peak RSS for a ~100k and the ~1M semester (json, own processes)."""
    base = "psycopg server-side cursor -> tuples (same SQL)"
    n, raw = rate(lambda: raw_cursor_rows(dsn, SEMESTER), repeat)
    json_big, rss_big = _serve(url, workdir, n, [("json", repeat)])
    others, rss_others = _serve(url, workdir, n, [("jsonl", repeat), ("tar.gz", repeat)])
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
                f"DownloadSession {fmt} bundle, semester {SEMESTER}",
                n,
                timing.median,
                base,
                raw.median,
                rss_others,
                "; ".join(
                    [
                        *[x for x in (timing.spread_note(), raw.spread_note()) if x],
                        f"{size / 1e6:,.0f} MB file; RSS over jsonl + tar.gz",
                    ]
                ),
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
    rows += targz_variants(url, dsn, n)
    return rows
