"""ImportService benchmarks on PostgreSQL, through a real `ferry serve import` process.

1. The 1M-record bench bundle (json) imported into an empty database, against psycopg
   COPY (binary) of the same tables' rows into the same empty schema.
2. The same bundle imported again: every record unchanged.
3. The same bundle written as jsonl, imported into an empty database.
4. Peak RSS of the server for the 1M import, against a ~100k import.
5. 10,000 students from csv (ImportEntities) vs django-import-export (imports_csv.py),
   when the optional `bench` dependencies are installed.

The bundle is exported once from the bench database (read-only) with the json writer.
Each import run gets a freshly created, migrated scratch database and a fresh server.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg

from bench.common import Row, Timing, fresh_database, point
from bench.server import FerryServer
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.bundle.formats.json import JsonBundle
from ferry.bundle.formats.jsonl import JsonlBundle
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.v1 import bundle_pb2, import_pb2, import_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
SEMESTER = "2026-fall"
CHUNK = 1024 * 1024
log = logging.getLogger("bench.imports")


def ImportServer(url: str, workdir: Path) -> FerryServer:
    """`ferry serve import` with room for the 1M-record upload, spooling in `workdir`."""
    return FerryServer(
        url,
        workdir,
        services=("import",),
        env={
            "FERRY_IMPORTS_MAX_UPLOAD_BYTES": str(4 * 1024**3),
            "FERRY_IMPORTS_SPOOL_DIR": str(workdir),
        },
    )


def _sample(events: Iterator[Event], tenth: int) -> list[Event]:
    """About 1/`tenth` of the bundle: the students whose id hashes into one bucket, with
    all courses and everything below the kept students (mentors outside it dropped).
    Held in memory (a sample is small) so the header's counts can be made to match."""

    def kept(student_id: Any) -> bool:
        return zlib.crc32(str(student_id).encode()) % tenth == 0

    out: list[Event] = []
    counts: dict[str, int] = {}
    for event in events:
        if isinstance(event, Batch) and event.entity != "courses":
            records = [r for r in event.records if kept(r["student_id"])]
            if event.entity == "students":
                for r in records:
                    if r.get("mentor_student_id") and not kept(r["mentor_student_id"]):
                        r["mentor_student_id"] = None
            event = Batch(event.entity, records)
        if isinstance(event, Batch):
            counts[event.entity] = counts.get(event.entity, 0) + len(event.records)
        out.append(event)
    for event in out:
        if isinstance(event, Header):
            event.metadata.counts.clear()
            event.metadata.counts.update(counts)
        elif isinstance(event, Trailer):
            event.counts = dict(counts)
    return out


def export_bundle(url: str, path: Path, tenth: int = 1, fmt: Any = None) -> None:
    """Write the semester's bundle (or a 1/`tenth` sample of it) as a json file (or in
    the bundle format `fmt`)."""
    engine = make_engine(url)
    # Soft-deleted records too: the bundle then holds exactly the tables' rows, which is
    # what the COPY baseline copies.
    req = SessionRequest(semester=SEMESTER, batch_size=5000, include_deleted=True)
    events = session_events(engine, SCHOOL, req)
    with path.open("wb") as f:
        (fmt or JsonBundle()).write(_sample(events, tenth) if tenth > 1 else events, f)
    engine.dispose()


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


def upload(server: FerryServer, path: Path) -> tuple[import_pb2.ImportResult, float]:
    """(result, seconds) of one ImportSession of the file at `path`."""
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = import_pb2_grpc.ImportServiceStub(ch)
        t = time.perf_counter()
        resp = stub.ImportSession(
            _requests(path),
            timeout=3600,
            metadata=[("authorization", f"Bearer {server.token()}")],
        )
        return resp.result, time.perf_counter() - t


def scratch_name(suffix: str = "import") -> str:
    """A scratch database's name beside the run's own (FERRY_BENCH_DB), so two runs on
    one server never drop each other's databases."""
    return os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_" + suffix


def scratch_database(name: str | None = None) -> str:
    """A freshly created, migrated, empty database `name` (default: scratch_name());
    returns its URL."""
    url = fresh_database(name or scratch_name())
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def dump_tables(dsn: str, workdir: Path) -> dict[str, Path]:
    """Every dataset table of the bench database as a binary COPY file (not timed)."""
    files = {}
    with psycopg.connect(dsn) as conn:
        for entity in SCHOOL.in_order():
            name = entity.table.name
            path = workdir / f"{name}.copy"
            with (
                path.open("wb") as f,
                conn.cursor().copy(
                    f'COPY (SELECT * FROM "{name}" ORDER BY id) TO STDOUT (FORMAT BINARY)'
                ) as cp,
            ):
                for data in cp:
                    f.write(data)
            files[name] = path
    return files


def copy_in(dsn: str, files: dict[str, Path]) -> float:
    """Seconds to COPY every dumped table into the empty schema in one transaction."""
    with psycopg.connect(dsn) as conn:
        t = time.perf_counter()
        with conn.transaction():
            for name, path in files.items():
                with (
                    path.open("rb") as f,
                    conn.cursor().copy(f'COPY "{name}" FROM STDIN (FORMAT BINARY)') as cp,
                ):
                    while data := f.read(CHUNK):
                        cp.write(data)
        return time.perf_counter() - t


def _created(result: import_pb2.ImportResult) -> int:
    return sum(s.created for s in result.summaries)


def _timing(rates: list[float]) -> Timing:
    ordered = sorted(rates)
    return Timing(ordered[len(ordered) // 2], ordered[0], ordered[-1])


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """Rows for the 1M import, the unchanged re-import, and the ~100k import (RSS)."""
    full, sample = workdir / "bundle.json", workdir / "bundle-sample.json"
    export_bundle(url, full)
    export_bundle(url, sample, tenth=10)
    files = dump_tables(dsn, workdir)
    with psycopg.connect(dsn) as conn:
        copied = sum(
            conn.execute(f'SELECT count(*) FROM "{e.table.name}"').fetchone()[0]  # type: ignore[index]
            for e in SCHOOL.in_order()
        )

    copy_rates = []
    for _ in range(repeat):
        copy_rates.append(copied / copy_in(_dsn(scratch_database()), files))

    import_rates, reimport_rates, rss = [], [], []
    n = 0
    for _ in range(repeat):
        server = ImportServer(scratch_database(), workdir)
        try:
            result, seconds = upload(server, full)
            n = _created(result)
            import_rates.append(n / seconds)
            rss.append(server.rss_mb())
            again, seconds = upload(server, full)
            unchanged = sum(s.unchanged for s in again.summaries)
            if unchanged != n:
                raise AssertionError(f"re-import: {unchanged} unchanged of {n}")
            reimport_rates.append(n / seconds)
        finally:
            server.stop()

    lines = workdir / "bundle.jsonl"
    export_bundle(url, lines, fmt=JsonlBundle())
    jsonl_rates, jsonl_rss = [], []
    for _ in range(repeat):
        server = ImportServer(scratch_database(), workdir)
        try:
            result, seconds = upload(server, lines)
            jsonl_rates.append(_created(result) / seconds)
            jsonl_rss.append(server.rss_mb())
        finally:
            server.stop()
    lines.unlink()

    server = ImportServer(scratch_database(), workdir)
    try:
        small, seconds = upload(server, sample)
        n_small = _created(small)
        small_rss = server.rss_mb()
    finally:
        server.stop()

    ferry, copy, again_t = _timing(import_rates), _timing(copy_rates), _timing(reimport_rates)
    jsonl = _timing(jsonl_rates)
    peak = max(rss)
    point("ImportSession json", n_small, n_small / seconds, 0.0, small_rss)
    point("ImportSession json", n, ferry.median, copy.median, peak)
    rows = [
        Row(
            f"ImportSession json bundle into an empty db, semester {SEMESTER}",
            n,
            ferry.median,
            "psycopg COPY (binary) of the same tables into the same empty schema",
            copy.median,
            peak,
            "; ".join(
                s for s in (ferry.spread_note(), copy.spread_note(), "RSS = server VmHWM") if s
            ),
        ),
        Row(
            "ImportSession re-import of the same bundle (all unchanged)",
            n,
            again_t.median,
            "first import into the empty db",
            ferry.median,
            peak,
            again_t.spread_note(),
        ),
        Row(
            "ImportSession of the same bundle as jsonl into an empty db",
            n,
            jsonl.median,
            "psycopg COPY (binary), as above",
            copy.median,
            max(jsonl_rss),
            "; ".join(s for s in (jsonl.spread_note(), "RSS = server VmHWM") if s),
        ),
        Row(
            f"ImportSession of a ~1/10 sample ({n_small:,} records) into an empty db",
            n_small,
            n_small / seconds,
            "-",
            0.0,
            small_rss,
            f"peak RSS {peak:.0f} MB at {n:,} vs {small_rss:.0f} MB at {n_small:,} records "
            f"(+{peak - small_rss:.0f} MB)",
        ),
    ]
    if importlib.util.find_spec("import_export") is None:
        log.warning("django-import-export is not installed (pip install -e '.[dev,bench]')")
    else:
        from bench import imports_csv

        rows.append(imports_csv.run(workdir, repeat))
    return rows


def profile(url: str, dsn: str, workdir: Path, out: Path, rate_hz: int = 50) -> None:
    """One json ImportSession of the bench semester into an empty database with py-spy
    (the `bench` extra) recording the server: collapsed stacks in `out`, then the time
    per frame (inclusive and own) printed, beside one COPY of the same rows."""
    import subprocess
    import sys

    full = workdir / "bundle.json"
    export_bundle(url, full)
    files = dump_tables(dsn, workdir)
    with psycopg.connect(dsn) as conn:
        copied = sum(
            conn.execute(f'SELECT count(*) FROM "{e.table.name}"').fetchone()[0]  # type: ignore[index]
            for e in SCHOOL.in_order()
        )
    copy_rate = copied / copy_in(_dsn(scratch_database()), files)

    class Logged(FerryServer):
        """Keeps the merge's phase timings (ferry.merge.run logs them at DEBUG)."""

        phases: list[str] = []

        def _drain(self) -> None:
            for line in self.proc.stderr or []:
                if "ferry.merge" in line:
                    self.phases.append(line.strip())

    server = Logged(
        scratch_database(),
        workdir,
        services=("import",),
        env={
            "FERRY_IMPORTS_MAX_UPLOAD_BYTES": str(4 * 1024**3),
            "FERRY_IMPORTS_SPOOL_DIR": str(workdir),
            "FERRY_LOG_LEVEL": "DEBUG",
        },
    )
    try:
        spy = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
             str(server.proc.pid), "--rate", str(rate_hz), "--format", "raw", "--threads",
             "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # attached
        result, seconds = upload(server, full)
        spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
        spy.wait(60)
    finally:
        server.stop()
    n = _created(result)
    print(f"import {n:,} records in {seconds:.1f}s: {n / seconds:,.0f}/s; COPY binary "
          f"{copy_rate:,.0f}/s; ratio {n / seconds / copy_rate:.2f}")  # fmt: skip
    print("\n## phases (ferry.merge.run, DEBUG)")
    for line in Logged.phases:
        print(line[:200])
    summarize(out)


def summarize(path: Path, top: int = 30) -> None:
    """Per thread, the frames that held the most samples: inclusive and own."""
    import re
    from collections import Counter

    threads: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    own: Counter[tuple[str, str]] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        # "function (file:line)": lines of one function count together
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        thread, frames = frames[0].rpartition(": ")[2], frames[1:]  # "thread (id): name"
        n = int(count)
        threads[thread] += n
        for f in set(frames):
            inclusive[(thread, f)] += n
        if frames:
            own[(thread, frames[-1])] += n
    total = sum(threads.values())
    print(f"{total} samples; by thread: " + ", ".join(f"{t} {c}" for t, c in threads.most_common()))
    for title, table in (("inclusive", inclusive), ("own", own)):
        print(f"\n## {title}")
        for (thread, frame), c in table.most_common(top):
            print(f"{100 * c / total:5.1f}%  {thread[:24]:24}  {frame[:120]}")


if __name__ == "__main__":
    import argparse
    import tempfile

    from bench.common import database_url

    parser = argparse.ArgumentParser(description="py-spy profile of the 1M json import")
    parser.add_argument("--output", default="import-profile.txt")
    parser.add_argument("--summarize", action="store_true", help="only summarize --output")
    args = parser.parse_args()
    if args.summarize:
        summarize(Path(args.output))
    else:
        bench_url = database_url(os.environ.get("FERRY_BENCH_DB", "ferry_bench"))
        with tempfile.TemporaryDirectory(prefix="ferry-bench-profile-") as tmp:
            profile(bench_url, _dsn(bench_url), Path(tmp), Path(args.output).resolve())
