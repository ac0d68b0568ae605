"""How cost grows with the data: every path of the scaling goal at 100k, 1M and 10M
records (`python -m bench --scale large` seeds ten semesters of the bench shape, ~10M
records, by COPY; `--sizes` picks the sizes, and at the bench scale 100k and 1M are what
there is). The sizes are: 100k, a ~1/10 sample of one semester; 1M, one semester; 10M,
the whole database; a size between (`--sizes 1000000,8000000`), a copy of the database
keeping that many semesters (trimmed_copy). The json bundle of the whole 10M database is
~2.4 GB: an upload's payload may be as large as imports.max_upload_bytes, which the
bench's servers raise (BundleLimits.for_upload; a fixed 2 GiB cap refused it until
98cfe4b, and a failed measurement is printed as FAILED while the others still run).

Per size and path, Ferry's records/s and peak RSS beside its raw baseline's, measured in
the same run, each in a fresh process (the VmHWM of the process doing Ferry's work):

- import, re-import, backup and restore (`lifecycle`), through fresh `ferry serve import`
  and `ferry serve export` processes, one run each:
  - ImportSession of the size's json bundle (soft-deleted records too) into an empty
    database, vs psycopg COPY (binary) of the same rows into an empty schema;
  - the same bundle imported again, every record unchanged, vs the first import (Ferry vs
    Ferry, named so);
  - a backup of that database (DownloadSession scope all, json) into a file, vs a psycopg
    server-side cursor read of the same SQL;
  - that backup restored into an empty database (ImportSession replace), vs the COPY;
- StreamSession and DownloadSession json of a whole scope vs a psycopg server-side cursor
  over the same SQL: at the large scale the whole of a copy keeping one semester (1M,
  scope all, see below) and the whole database (scope all: 10M); at the bench scale one
  semester (1M); 100k is a semester of a scratch copy holding a tenth of one
  (bench.bundle's);
- csv and xlsx entity exports of N attendance rows vs a bare csv.writer / xlsxwriter loop
  (bench.formats' children).

**The sessions' 1M row reads the whole of a one-semester database** (a compacted copy of
the large one keeping its newest semester, `_one_semester`), as the 10M row reads the
whole large database. Until this pass it read one semester of the large database, and the
ratio fell from 0.82-0.95 at 1M to 0.67-0.69 at 8M while Ferry's absolute rate rose.
Why (issue 27; a three-semester database of the large shape, 3,091,200 records, CPU
from /proc per read, load 5-8): a semester of a large database is another query, not a
smaller one. The database scans every semester's rows and keeps one through the scope's
semi-joins; its CPU per record sent for the baseline's SQL, semester vs whole database:
attendance 4.05-4.47 vs 1.80 us, grades 5.48-6.59 vs 2.51, daily_performance 9.93 vs
3.37, students 9.79 vs 1.55 (ten semesters filter ten times the rows). Both sides pay
that, which makes Ferry's own per-record cost (the server's 2.6-2.7 us, the same at both
sizes) a smaller share of a semester read than of a whole read. Ferry alone also counts
the scope for its header first; for one semester those seven counts scan every semester
too (2.95 s of wall here against 1.21 s for the whole database). Neither effect is about
size, and which one wins moves with the load. What does not differ: Ferry's query plans
as the baseline's at both sizes (hash joins, a sort on id that spills; Ferry adds
`school_id = 1` and dates as text) and costs the database the same per record (1.79 vs
1.80 us for attendance, whole database); Ferry's server CPU per record did not grow
(2.70 us for the 929,406-record bench semester, 2.62 for the 2,947,696 records of the
whole three-semester database). Reading the whole of a database at both sizes compares
one query shape at two sizes. One stream of each on that database (load 6-7):
StreamSession 0.64 of the raw read for a semester, 1.12 for the whole of a one-semester
copy, 1.02 for the whole three semesters; DownloadSession json 0.52, 1.05, 1.07 (single
runs move by +-0.3 at this load: the verdict wants `--repeat`).

`--paths` picks path groups (GROUPS: lifecycle, sessions, csv, xlsx); `--repeat N` runs
each session and its baseline N times (median rate), and the csv/xlsx exports N times in
turns with their bare loops (median rate, highest peak RSS).

They run path group by path group, in that order (the import/backup group first: the
one not measured at 10M before), and each row is printed (flushed) as soon as it is measured,
with the load average beside it: a large run takes hours on a loaded machine, and one
stopped part-way still shows what it measured. When a group's 10M rows are in, its
scaling verdicts print at once (bench.goals.scaling: the ratio to the same-size baseline
at 10M against 1M, since the load moves absolute records/s by 2-4x between sizes; RSS
+<= 50 MB), and again with every goal at the end.
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

import grpc
import psycopg

from bench.backup import ImportServer, download_backup, upload
from bench.bundle import drop_scratch, scratch_copy
from bench.common import PG_ADMIN, Row, point, print_table, rate, raw_rows, template_copy
from bench.formats import _child_rss
from bench.goals import SCALING_PATHS, print_goals, scaling
from bench.imports import _dsn, copy_in, dump_tables, export_bundle, scratch_database, scratch_name
from bench.server import FerryServer
from ferry.bundle.events import session_events
from ferry.bundle.formats.json import JsonBundle
from ferry.bundle.scan import SCOPE_ALL, SessionRequest
from ferry.bundle.semesters import recount
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.v1 import export_pb2, export_pb2_grpc, import_pb2

SEMESTER = "2026-fall"
T = TypeVar("T")


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


def _sessions(
    url: str, dsn: str, workdir: Path, semester: str | None, repeat: int, what: str = ""
) -> list[Row]:
    """StreamSession and DownloadSession json of one scope, each in a fresh server."""
    n_raw, raw = rate(lambda: raw_rows(dsn, semester), repeat)
    what = what or (f"semester {semester}" if semester else "the whole database (scope all)")
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
            f"{path} at {n:,} records, {what} (scale{', 1 run' if repeat == 1 else ''})",
            n, t.median,
            "psycopg server-side cursor -> tuples (same SQL)", raw.median, rss,
            "; ".join(
                s for s in (t.spread_note(), raw.spread_note(), "RSS = server VmHWM", _load()) if s
            ),
            {"size": n, "scale_rss_mb": rss},
        ))  # fmt: skip
        _progress(rows[-1])
    return rows


def _load() -> str:
    """The machine's 1-minute load average, for the note of a row measured now."""
    return f"load {os.getloadavg()[0]:.1f}"


def _progress(row: Row) -> None:
    """Print `row` now (the table at the end repeats it)."""
    print_table([row])
    print(flush=True)


def _say(line: str) -> None:
    """A progress line, flushed: what was just measured, before its row is complete."""
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def _bundle(url: str, path: Path, part: str) -> None:
    """The json bundle (soft-deleted records too) of `part`: "sample" (a ~1/10 sample of
    the semester, ~100k records), "semester" (~1M) or "all" (the whole database, ~10M at
    the large scale)."""
    if part != "all":
        export_bundle(url, path, tenth=10 if part == "sample" else 1)
        # The json writer stops at the trailer, leaving the scan's generator (and its
        # connection) open until collected; a later CREATE DATABASE ... TEMPLATE (the
        # sessions' scratch copy) would find the database in use.
        gc.collect()
        return
    engine = make_engine(url)
    req = SessionRequest("", include_deleted=True, batch_size=5000, scope=SCOPE_ALL)
    with path.open("wb") as f, closing(session_events(engine, SCHOOL, req)) as events:
        JsonBundle().write(events, f)
    engine.dispose()


def _rows_in(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        return sum(
            int(conn.execute(f'SELECT count(*) FROM "{e.table.name}"').fetchone()[0])  # type: ignore[index]
            for e in SCHOOL.in_order()
        )


def _import(url: str, workdir: Path, path: Path, **options: object) -> tuple[object, float, float]:
    """(result, seconds, server VmHWM) of one ImportSession of `path` in a fresh
    `ferry serve import` on `url`."""
    server = ImportServer(url, workdir)
    try:
        result, seconds = upload(server, path, **options)
        return result, seconds, server.rss_mb()
    finally:
        server.stop()


def lifecycle(url: str, workdir: Path, part: str) -> list[Row]:
    """Import, re-import unchanged, backup and restore of one size (`part`, see _bundle),
    each through a fresh server process (its VmHWM), one run each:

    1. the bundle imported into an empty database A (ImportSession json);
    2. the same bundle imported again into A, every record unchanged (vs the first import);
    3. baseline: A's tables dumped (binary COPY, not timed) and COPY'd into an empty db B;
    4. A backed up (DownloadSession scope all, json) vs a server-side cursor read of A;
    5. that backup restored into an empty db B (ImportSession replace) vs the COPY of 3.
    """
    bundle, backup = workdir / f"scale-{part}.json", workdir / f"scale-{part}-backup.json"
    _bundle(url, bundle, part)
    mb = bundle.stat().st_size / 1e6
    first = scratch_database(scratch_name("scale_a"))
    result, seconds, rss = _import(first, workdir, bundle)
    n = sum(s.created for s in result.summaries)  # type: ignore[attr-defined]
    _say(f"ImportSession json, {part}: {n:,} records ({mb:,.0f} MB) in {seconds:.1f}s = "
         f"{n / seconds:,.0f}/s, server VmHWM {rss:.0f} MB, {_load()}")  # fmt: skip
    imp = (n / seconds, rss, _load())

    again, seconds, rss = _import(first, workdir, bundle)
    bundle.unlink()
    unchanged = sum(s.unchanged for s in again.summaries)  # type: ignore[attr-defined]
    if unchanged != n:
        raise AssertionError(f"re-import: {unchanged} unchanged of {n}")
    rows = [Row(
        f"ImportSession re-import unchanged at {n:,} records, vs the first import "
        f"(Ferry vs Ferry; scale, 1 run)", n, n / seconds,
        "the first import of the same bundle into the empty db", imp[0], rss,
        f"RSS = server VmHWM (fresh server); {_load()}", {"size": n, "scale_rss_mb": rss},
    )]  # fmt: skip
    _progress(rows[-1])

    files = dump_tables(_dsn(first), workdir)
    copied = _rows_in(_dsn(first))
    copy_rate = copied / copy_in(_dsn(scratch_database(scratch_name("scale_b"))), files)
    for f in files.values():
        f.unlink()
    copy_load = _load()
    if copied != n:
        raise AssertionError(f"the imported db holds {copied} rows, the import created {n}")
    point("ImportSession json (scale)", n, imp[0], copy_rate, imp[1])
    rows.append(Row(
        f"ImportSession json at {n:,} records into an empty db (scale, 1 run)", n, imp[0],
        "psycopg COPY (binary) of the same rows into an empty schema", copy_rate, imp[1],
        f"RSS = server VmHWM; {imp[2]} (import), {copy_load} (COPY)",
        {"size": n, "scale_rss_mb": imp[1]},
    ))  # fmt: skip
    _progress(rows[-1])

    t = time.perf_counter()
    n_raw = raw_rows(_dsn(first), None, True)
    raw_rate, raw_load = n_raw / (time.perf_counter() - t), _load()
    server = FerryServer(first, workdir, services=("export",))
    try:
        seconds = download_backup(server, backup)
        rss = server.rss_mb()
    finally:
        server.stop()
    point("backup (scale)", n_raw, n_raw / seconds, raw_rate, rss)
    rows.append(Row(
        f"backup (DownloadSession scope all, json) at {n_raw:,} records into a file "
        f"(scale, 1 run)", n_raw, n_raw / seconds,
        "psycopg server-side cursor -> tuples (same SQL)", raw_rate, rss,
        f"RSS = server VmHWM; {raw_load} (read), {_load()} (backup); "
        f"{backup.stat().st_size / 1e6:,.0f} MB", {"size": n_raw, "scale_rss_mb": rss},
    ))  # fmt: skip
    _progress(rows[-1])

    restored = scratch_database(scratch_name("scale_b"))
    result, seconds, rss = _import(
        restored, workdir, backup, strategy=import_pb2.MERGE_STRATEGY_REPLACE
    )
    backup.unlink()
    created = sum(s.created for s in result.summaries)  # type: ignore[attr-defined]
    if created != n_raw:
        raise AssertionError(f"restore created {created} of {n_raw} records")
    point("restore (scale)", created, created / seconds, copy_rate, rss)
    rows.append(Row(
        f"restore (ImportSession replace) at {created:,} records into an empty db "
        f"(scale, 1 run)", created, created / seconds,
        "psycopg COPY (binary) of the same rows into an empty schema (the import's, above)",
        copy_rate, rss, f"RSS = server VmHWM; {_load()} (restore), {copy_load} (COPY)",
        {"size": created, "scale_rss_mb": rss},
    ))  # fmt: skip
    _progress(rows[-1])
    return rows


def _verdicts(rows: list[Row], paths: tuple[str, ...]) -> None:
    """The scaling verdicts of `paths`, printed as soon as their largest size is in."""
    verdicts = [scaling(rows, p) for p in paths]
    if any(v.met is not None for v in verdicts):
        print_goals([v for v in verdicts if v.met is not None], "so far")
        print(flush=True)


def _guarded(what: str, measure: Callable[[], T], failed: T) -> T:
    """measure(), or `failed` when it fails: the failure is printed, and the other paths
    of a run that takes hours still run."""
    try:
        return measure()
    except Exception:  # reported, and the run goes on
        _say(f"FAILED: {what}")
        traceback.print_exc(file=sys.stdout)
        sys.stdout.flush()
        return failed


def _drop(*names: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _part(n: int) -> str:
    """The part of the data a size stands for: sample (~100k), semester (~1M), or all
    (the whole database; trimmed to about `n` records by trimmed_copy when it holds more)."""
    return "sample" if n < 500_000 else "semester" if n < 5_000_000 else "all"


def trimmed_copy(url: str, keep: int, suffix: str = "scale_src", compact: bool = False) -> str:
    """The URL of a copy of the database at `url` holding only its newest `keep`
    semesters (their courses and everything below them; every student and highlight
    stays), for a whole-database size below the full one: with ~1M records a semester,
    `--sizes 8000000` keeps 8. `compact`: the tables rewritten without the rows deleted
    (VACUUM FULL), so a scan of the copy reads what a database of that size holds, not
    the pages of the semesters dropped."""
    name = scratch_name(suffix)
    dsn = template_copy(url, name)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "CREATE TEMP TABLE dropped AS SELECT id FROM courses WHERE semester NOT IN "
            "(SELECT DISTINCT semester FROM courses ORDER BY semester DESC LIMIT %s)",
            (keep,),
        )
        conn.execute("CREATE TEMP TABLE gone AS SELECT id FROM enrollments "
                     "WHERE course_ref IN (SELECT id FROM dropped)")  # fmt: skip
        for table in ("grades", "attendance", "daily_performance"):
            conn.execute(f"DELETE FROM {table} WHERE enrollment_ref IN (SELECT id FROM gone)")
        conn.execute("DELETE FROM enrollments WHERE id IN (SELECT id FROM gone)")
        conn.execute("UPDATE courses SET prerequisite_id = NULL "
                     "WHERE prerequisite_id IN (SELECT id FROM dropped)")  # fmt: skip
        conn.execute("DELETE FROM courses WHERE id IN (SELECT id FROM dropped)")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM FULL ANALYZE" if compact else "VACUUM ANALYZE")
    trimmed = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    engine = make_engine(trimmed)
    with engine.begin() as c:  # ListSemesters' kept counts follow the courses dropped
        recount(c, SCHOOL, None)
    engine.dispose()
    return trimmed


def _one_semester(url: str, workdir: Path, repeat: int) -> list[Row]:
    """The sessions at 1M read as those at 10M are: the whole of a database, here a
    compacted copy of the large one keeping its newest semester (see the module
    docstring: a semester of the large database is another read, not a smaller one)."""
    one = trimmed_copy(url, 1, "scale_one", compact=True)
    try:
        what = "the whole database of a copy keeping one semester (scope all)"
        return _sessions(one, _dsn(one), workdir, None, repeat, what)
    finally:
        _drop(scratch_name("scale_one"))


GROUPS = ("lifecycle", "sessions", "csv", "xlsx")


def run(
    url: str,
    dsn: str,
    workdir: Path,
    repeat: int,
    sizes: tuple[int, ...],
    groups: tuple[str, ...] = GROUPS,
) -> list[Row]:
    """Every path at every size, path by path (the new, costlier ones first): the
    import/backup lifecycle, the sessions, then the csv and xlsx exports. `groups`: some
    of GROUPS only (`--paths`), to measure again what a loaded run left in doubt without
    the hours of the rest."""
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown scale paths {sorted(unknown)}; known: {', '.join(GROUPS)}")
    rows: list[Row] = []
    if "lifecycle" in groups:
        rows += _lifecycles(url, dsn, workdir, sizes)
    if "sessions" in groups:
        rows += _all_sessions(url, dsn, workdir, repeat, sizes)
    for fmt in ("csv", "xlsx"):
        if fmt in groups:
            rows += _exports(fmt, dsn, workdir, repeat, sizes, rows)
    return rows


def _several(dsn: str) -> tuple[bool, int]:
    """Whether the database holds more than one semester, and how many."""
    with psycopg.connect(dsn) as conn:
        semesters = conn.execute("SELECT count(DISTINCT semester) FROM courses").fetchone()
    count = semesters[0] if semesters else 1
    return count > 1, count


def _lifecycles(url: str, dsn: str, workdir: Path, sizes: tuple[int, ...]) -> list[Row]:
    """Import, re-import, backup and restore at every size."""
    rows: list[Row] = []
    several, count = _several(dsn)
    for n in sorted(sizes):
        part = _part(n)
        if part == "all" and not several:
            continue
        keep = min(count, max(1, round(n / 1_000_000)))
        if part == "all" and keep < count:
            source = _guarded(
                f"a copy keeping {keep} semesters", lambda k=keep: trimmed_copy(url, k), ""
            )
        else:
            source = url
        if source:
            rows += _guarded(
                f"lifecycle, {part} ({n:,})", lambda p=part, u=source: lifecycle(u, workdir, p), []
            )
            _verdicts(rows, SCALING_PATHS[:4])
    _drop(scratch_name("scale_a"), scratch_name("scale_b"), scratch_name("scale_src"))
    return rows


def _all_sessions(
    url: str, dsn: str, workdir: Path, repeat: int, sizes: tuple[int, ...]
) -> list[Row]:
    """StreamSession and DownloadSession json at every size."""
    rows: list[Row] = []
    several, _ = _several(dsn)
    if min(sizes) < 1_000_000:  # a semester of a tenth of the size, in a scratch copy
        small_url, small_dsn = scratch_copy(url)
        try:
            rows += _guarded("sessions, 100k", lambda: _sessions(
                small_url, small_dsn, workdir, SEMESTER, repeat), [])  # fmt: skip
        finally:
            drop_scratch()
    if several and max(sizes) > 1_000_000:
        rows += _guarded("sessions, 1M", lambda: _one_semester(url, workdir, repeat), [])
        rows += _guarded("sessions, 10M", lambda: _sessions(url, dsn, workdir, None, repeat), [])
    else:
        rows += _guarded("sessions, 1M", lambda: _sessions(url, dsn, workdir, SEMESTER, repeat), [])
    _verdicts(rows, SCALING_PATHS[4:6])
    return rows


def _exports(
    fmt: str, dsn: str, workdir: Path, repeat: int, sizes: tuple[int, ...], before: list[Row]
) -> list[Row]:
    """The csv or xlsx entity export of N attendance rows at every size, beside a bare
    writer loop, `repeat` times in turns (Ferry, bare, Ferry, bare...): the median rate
    of each, the highest peak RSS."""
    bare = {"csv": "csv.writer", "xlsx": "xlsxwriter constant_memory"}[fmt]
    rows: list[Row] = []
    for n in sizes:
        runs = [
            (_child_rss(fmt, n, dsn, workdir), _child_rss(fmt, n, dsn, workdir, raw=True))
            for _ in range(max(1, repeat))
        ]
        got = int(runs[0][0]["rows"])
        ferry_rate = statistics.median(got / f["seconds"] for f, _ in runs)
        raw_rate = statistics.median(r["rows"] / r["seconds"] for _, r in runs)
        rss = max(f["rss_mb"] for f, _ in runs)
        raw_rss = max(r["rss_mb"] for _, r in runs)
        point(f"{fmt} export (scale)", got, ferry_rate, raw_rate, rss, raw_rss)
        times = "1 run" if len(runs) == 1 else f"median of {len(runs)} runs in turns"
        rows.append(Row(
            f"{fmt} export at {got:,} attendance rows (scale, {times})", got, ferry_rate,
            f"bare {bare} loop, same rows", raw_rate, rss,
            f"baseline peak RSS {raw_rss:.0f} MB; {_load()}",
            {"size": got, "scale_rss_mb": rss},
        ))  # fmt: skip
        _progress(rows[-1])
    _verdicts(before + rows, (f"{fmt} export",))
    return rows
