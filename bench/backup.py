"""Whole-database backups on PostgreSQL, through real `ferry serve` processes.

1. A backup of the bench database (DownloadSession, scope all, json, soft-deleted
   records too) received by a gRPC client into a file, against a psycopg server-side
   cursor reading every row of the same queries. Server peak RSS, and the same for a
   backup of a ~1/10 sample database (its own row), so growth with data is visible.
2. That backup restored into an empty database (ImportSession, replace, as `ferry backup
   restore` does), against psycopg COPY (binary) of the same tables' rows.
3. An import with backup_before against the same import without (Ferry vs Ferry): the
   semester bundle re-imported with replace into the restored database.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc

from bench.common import Row, Timing, raw_rows
from bench.imports import (
    CHUNK,
    SEMESTER,
    _dsn,
    copy_in,
    dump_tables,
    export_bundle,
    scratch_database,
    scratch_name,
)
from bench.server import FerryServer
from ferry.v1 import bundle_pb2, export_pb2, export_pb2_grpc, import_pb2, import_pb2_grpc


def download_backup(server: FerryServer, path: Path) -> float:
    """Seconds to receive the whole-database backup into `path`."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch, path.open("wb") as f:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.DownloadSessionRequest(
            scope="all", bundle_format="json", include_deleted=True
        )
        t = time.perf_counter()
        for msg in stub.DownloadSession(
            req, timeout=3600, metadata=[("authorization", f"Bearer {server.token()}")]
        ):
            f.write(msg.chunk.data)
        return time.perf_counter() - t


def _requests(path: Path, **options: Any) -> Iterator[import_pb2.ImportSessionRequest]:
    yield import_pb2.ImportSessionRequest(
        options=import_pb2.ImportOptions(filename=path.name, **options)
    )
    offset = 0
    with path.open("rb") as f:
        while data := f.read(CHUNK):
            yield import_pb2.ImportSessionRequest(
                file_chunk=bundle_pb2.FileChunk(data=data, offset=offset)
            )
            offset += len(data)


def upload(server: FerryServer, path: Path, **options: Any) -> tuple[Any, float]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = import_pb2_grpc.ImportServiceStub(ch)
        t = time.perf_counter()
        resp = stub.ImportSession(
            _requests(path, **options),
            timeout=3600,
            metadata=[("authorization", f"Bearer {server.token()}")],
        )
        return resp.result, time.perf_counter() - t


def ImportServer(url: str, workdir: Path) -> FerryServer:
    """`ferry serve import` as bench/imports.py starts it, its backups kept in `workdir`."""
    return FerryServer(
        url,
        workdir,
        services=("import",),
        env={
            "FERRY_IMPORTS_MAX_UPLOAD_BYTES": str(4 * 1024**3),
            "FERRY_IMPORTS_SPOOL_DIR": str(workdir),
            "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(workdir / "storage"),
        },
    )


def _timing(rates: list[float]) -> Timing:
    ordered = sorted(rates)
    return Timing(ordered[len(ordered) // 2], ordered[0], ordered[-1])


def _notes(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def sample_backup(url: str, workdir: Path) -> tuple[int, float, float]:
    """(records, seconds, server peak RSS) of the backup of a database holding a ~1/10
    sample of the semester, from a fresh `ferry serve export`, so the full backup's RSS
    can be set beside it."""
    bundle, out = workdir / "sample.json", workdir / "sample-backup.json"
    export_bundle(url, bundle, tenth=10)
    small = scratch_database(scratch_name("backup_sample"))
    server = ImportServer(small, workdir)
    try:
        result, _ = upload(server, bundle)
        n = sum(s.created for s in result.summaries)
    finally:
        server.stop()
    server = FerryServer(small, workdir, services=("export",))
    try:
        seconds = download_backup(server, out)
        return n, seconds, server.rss_mb()
    finally:
        server.stop()


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    backup = workdir / "all.json"
    raw_rates, backup_rates, rss = [], [], []
    n = raw_rows(dsn, None, True)
    for _ in range(repeat):
        t = time.perf_counter()
        raw_rows(dsn, None, True)
        raw_rates.append(n / (time.perf_counter() - t))
    server = FerryServer(url, workdir, services=("export",))
    try:
        for _ in range(repeat):
            backup_rates.append(n / download_backup(server, backup))
        rss.append(server.rss_mb())
    finally:
        server.stop()
    n_small, small_seconds, small_rss = sample_backup(url, workdir)

    files = dump_tables(dsn, workdir)
    copy_rates = [n / copy_in(_dsn(scratch_database()), files) for _ in range(repeat)]
    restore_rates = []
    for _ in range(repeat):
        restored = scratch_database()
        server = ImportServer(restored, workdir)
        try:
            result, seconds = upload(server, backup, strategy=import_pb2.MERGE_STRATEGY_REPLACE)
            created = sum(s.created for s in result.summaries)
            if created != n:
                raise AssertionError(f"restore created {created} of {n} records")
            restore_rates.append(n / seconds)
        finally:
            server.stop()

    # The semester re-imported with replace into the restored database (all unchanged):
    # with a backup of the semester taken first, and without.
    semester = workdir / "semester.json"
    export_bundle(url, semester)
    with_rates, without_rates = [], []
    server = ImportServer(restored, workdir)
    m = 0
    try:
        for _ in range(repeat):
            for flag, rates in ((False, without_rates), (True, with_rates)):
                result, seconds = upload(
                    server,
                    semester,
                    strategy=import_pb2.MERGE_STRATEGY_REPLACE,
                    backup_before=flag,
                )
                if bool(result.backup_key) != flag:
                    raise AssertionError(f"backup_before={flag} gave {result.backup_key!r}")
                m = sum(s.unchanged for s in result.summaries)
                rates.append(m / seconds)
    finally:
        server.stop()

    b, raw = _timing(backup_rates), _timing(raw_rates)
    r, copy = _timing(restore_rates), _timing(copy_rates)
    w, wo = _timing(with_rates), _timing(without_rates)
    return [
        Row(
            "backup (DownloadSession scope all, json) via gRPC into a file",
            n,
            b.median,
            "psycopg server-side cursor -> tuples (same SQL)",
            raw.median,
            max(rss),
            _notes(b.spread_note(), raw.spread_note(), "RSS = server VmHWM"),
        ),
        Row(
            f"backup of a ~1/10 sample database ({n_small:,} records), peak RSS beside the full",
            n_small,
            n_small / small_seconds,
            "-",
            0.0,
            small_rss,
            f"peak RSS {max(rss):.0f} MB at {n:,} vs {small_rss:.0f} MB at {n_small:,} records "
            f"({max(rss) - small_rss:+.0f} MB; goal within 50); (1 run)",
        ),
        Row(
            "restore of that backup into an empty db (ImportSession replace)",
            n,
            r.median,
            "psycopg COPY (binary) of the same tables into the same empty schema",
            copy.median,
            0.0,
            _notes(r.spread_note(), copy.spread_note()),
        ),
        Row(
            f"re-import {SEMESTER} with replace and backup_before (Ferry vs Ferry)",
            m,
            w.median,
            "the same import with backup_before off",
            wo.median,
            0.0,
            _notes(w.spread_note(), wo.spread_note()),
        ),
    ]
