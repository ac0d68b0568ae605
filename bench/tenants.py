"""Row-level security on against off, on the bench dataset split across 10 schools
(issue 26's goal: import, stream and report-miss within 10%; docs/tenants.md).

The seeded semester is split by student into 10 parts (each part: its students and
everything hanging from them, and every course), written once to files. Two fresh
databases get the same 10 schools: `on` is used as an app role that row-level security
binds (NOSUPERUSER, NOBYPASSRLS), `off` as the superuser, which bypasses it. Every
measurement alternates between the two in one run, the order flipped each time, so a
machine shared with other work loads both alike:

- import: each school's part imported into both (every record created);
- stream: each school's semester read as a bundle (`session_events`, the core of
  StreamSession, in-process: the gRPC framing is the same on both sides and is measured
  by the `stream` benchmark);
- report miss: student reports computed (no cache) for students of every school, each
  on a fresh connection from the pool, as a cache miss does.

The ratio is RLS-on time over RLS-off time (goal <= 1.10; bench/goals.py). Standalone:

    FERRY_BENCH_DB=<yours> python -m bench.tenants [--scale bench|medium] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import statistics
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.common import PG_ADMIN, Row, fresh_database, print_table
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate, roles, tenant
from ferry.db.engine import make_engine
from ferry.merge import MergeOptions, run_import
from ferry.reports.settings import ReportSettings
from ferry.reports.student import Scope, student_report
from ferry.v1 import bundle_pb2

SEMESTER = "2026-fall"
SCHOOLS = 10
REPORTS_PER_SCHOOL = 12


def part_of(student_id: str) -> int:
    return zlib.crc32(student_id.encode()) % SCHOOLS


def split(url: str, semester: str, wd: Path) -> tuple[list[Path], list[list[str]]]:
    """The semester's bundle in SCHOOLS parts, one pickle each (read from the database
    once); and each part's student ids."""
    source = make_engine(url)
    parts: list[dict[str, list[dict[str, Any]]]] = [{} for _ in range(SCHOOLS)]
    try:
        for e in session_events(source, SCHOOL, SessionRequest(semester)):
            if not isinstance(e, Batch):
                continue
            for r in e.records:
                sid = r.get("student_id")
                if sid is None:  # a course: every school has them all
                    for p in parts:
                        p.setdefault(e.entity, []).append(r)
                    continue
                k = part_of(str(sid))
                mentor = r.get("mentor_student_id")
                if mentor and part_of(str(mentor)) != k:
                    r = {**r, "mentor_student_id": None}  # the mentor is in another school
                parts[k].setdefault(e.entity, []).append(r)
    finally:
        source.dispose()
    paths, students = [], []
    for k, by_entity in enumerate(parts):
        path = wd / f"school-{k}.pickle"
        path.write_bytes(pickle.dumps(by_entity, protocol=pickle.HIGHEST_PROTOCOL))
        paths.append(path)
        students.append(sorted(str(r["student_id"]) for r in by_entity.get("students", [])))
    return paths, students


def events_of(path: Path, semester: str) -> list[Event]:
    by_entity: dict[str, list[dict[str, Any]]] = pickle.loads(path.read_bytes())
    events: list[Event] = [Header(bundle_pb2.BundleMetadata(semester=semester, dataset="school"))]
    for entity in SCHOOL.in_order():
        if entity.name in by_entity:
            events.append(Batch(entity.name, by_entity[entity.name]))
    events.append(Trailer({k: len(v) for k, v in by_entity.items()}))
    return events


@contextlib.contextmanager
def two_databases(base: str) -> Iterator[tuple[Engine, Engine, list[int]]]:
    """(RLS on: the app role's engine, RLS off: the superuser's, the schools' ids): two
    fresh migrated databases, each with SCHOOLS schools; dropped afterwards."""
    role = base + "_app"
    names = [base + "_on", base + "_off"]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        for name in names:  # this benchmark's own, left by a run that was stopped
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'bench' NOSUPERUSER NOBYPASSRLS")
    engines: list[Engine] = []
    try:
        ids: list[int] = []
        for name in names:
            url = fresh_database(name)
            platform = make_engine(url)
            migrate.upgrade(platform)
            roles.hand_over(platform, role)
            with platform.begin() as conn:
                ids = [
                    conn.execute(
                        sa.text(
                            "INSERT INTO schools (code, name, created_at) "
                            "VALUES (:c, :c, now()) RETURNING id"
                        ),
                        {"c": f"school{k}"},
                    ).scalar_one()
                    for k in range(SCHOOLS)
                ]
            if name.endswith("_on"):
                platform.dispose()
                app_url = sa.make_url(url).set(username=role, password="bench")
                engines.append(make_engine(app_url.render_as_string(hide_password=False)))
            else:
                engines.append(platform)
        yield engines[0], engines[1], ids
    finally:
        for e in engines:
            e.dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def both(
    i: int, school: int, on: Engine, off: Engine, fn: Callable[[Engine], Any]
) -> tuple[float, float]:
    """fn timed against each database acting for `school`, the order flipped with `i`."""
    out: dict[bool, float] = {}
    for rls in (True, False) if i % 2 == 0 else (False, True):
        engine = on if rls else off
        with tenant.acting_for(school):
            t = time.perf_counter()
            fn(engine)
            out[rls] = time.perf_counter() - t
    return out[True], out[False]


def _dsn(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def measure(url: str, wd: Path, repeat: int, semester: str = SEMESTER) -> dict[str, Any]:
    base = os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_tenants"
    paths, students = split(url, semester, wd)
    settings = ReportSettings()
    res: dict[str, Any] = {"import": [], "stream": [], "miss": [], "records": 0}
    with two_databases(base) as (on, off, ids):
        for k, (path, school) in enumerate(zip(paths, ids, strict=True)):
            events = events_of(path, semester)
            res["records"] += sum(len(e.records) for e in events if isinstance(e, Batch))

            def load(engine: Engine, events: list[Event] = events) -> None:
                run_import(
                    engine, SCHOOL, events, MergeOptions(), requested_by="bench",
                    source_sha256="bench",
                )  # fmt: skip

            res["import"].append(both(k, school, on, off, load))
            del events
        # Steady state, as autovacuum leaves it: statistics for every table in both. A
        # school's import ANALYZEs only tables it grew by 1,000+ rows (ferry.merge.apply),
        # and under RLS a table never analyzed is planned as a handful of rows: streams
        # of the `on` database took minutes in nested loops before this (docs/tenants.md).
        for db in ("_on", "_off"):
            with psycopg.connect(_dsn(base + db), autocommit=True) as conn:
                conn.execute("ANALYZE")

        def stream(engine: Engine) -> int:
            return sum(
                len(e.records)
                for e in session_events(engine, SCHOOL, SessionRequest(semester))
                if isinstance(e, Batch)
            )

        # What each side sends for a school: the same, or there is no ratio to time (the
        # superuser sends every school's semester while the bundle's queries have no
        # application scope: ten times the records, and ten times as long to wait for).
        with tenant.acting_for(ids[0]):
            res["streamed"], res["streamed_off"] = stream(on), stream(off)
        for r in range(repeat if res["streamed"] == res["streamed_off"] else 0):
            for k, school in enumerate(ids):
                res["stream"].append(both(r + k, school, on, off, stream))
        if res["stream"]:
            res["streamed"] *= SCHOOLS
        for k, school in enumerate(ids):
            step = max(1, len(students[k]) // REPORTS_PER_SCHOOL)
            for j, sid in enumerate(students[k][::step][:REPORTS_PER_SCHOOL]):

                def miss(engine: Engine, sid: str = sid) -> None:
                    with engine.connect() as conn:
                        student_report(conn, settings, sid, Scope())

                for _ in range(repeat):
                    res["miss"].append(both(j + k, school, on, off, miss))
    return res


def rows_of(res: dict[str, Any]) -> list[Row]:
    out = []
    for key, what, n in (
        ("import", "tenants: ImportSession core, 10 schools, RLS on vs off", res["records"]),
        ("stream", "tenants: StreamSession core, 10 schools, RLS on vs off", res["streamed"]),
        ("miss", "tenants: student report miss, 10 schools, RLS on vs off", 1),
    ):
        pairs: list[tuple[float, float]] = res[key]
        if not pairs:  # not comparable: nothing timed
            out.append(
                Row(
                    what, 0, 0.0, "same, RLS off (superuser)", 0.0, 0.0,
                    f"NOT COMPARABLE: for one school the superuser streamed "
                    f"{res['streamed_off']:,} records, the app role {res['streamed']:,} (the "
                    "bundle's queries have no application scope yet; docs/tenants.md)",
                    {"on_off": 0.0, "not_comparable": 1.0},
                )
            )  # fmt: skip
            continue
        if key == "miss":
            on = statistics.median(p[0] for p in pairs)
            off = statistics.median(p[1] for p in pairs)
            per, base, unit = 1 / on, 1 / off, "reports"
            note = f"p50 {on * 1000:.1f} ms on, {off * 1000:.1f} ms off, {len(pairs)} pairs"
        else:
            on, off = sum(p[0] for p in pairs), sum(p[1] for p in pairs)
            per, base, unit = n * (len(pairs) // 10) / on, n * (len(pairs) // 10) / off, "records"
            note = f"{on:.1f} s on, {off:.1f} s off over {len(pairs)} pairs"
        ratios = sorted(p[0] / p[1] for p in pairs)
        note += f"; per-pair on/off {ratios[0]:.2f} .. {ratios[-1]:.2f}"
        metrics = {"on_off": on / off, "pair_median": statistics.median(ratios)}
        out.append(
            Row(
                what,
                n,
                per,
                "same, RLS off (superuser)",
                base,
                0.0,
                f"{unit}/s; {note}; per-pair median {statistics.median(ratios):.2f}",
                metrics,
            )
        )
    return out


def run(url: str, dsn: str, wd: Path, repeat: int) -> list[Row]:
    return rows_of(measure(url, wd, repeat))


def main() -> None:
    import tempfile

    from ferry.demo.seed import Scale, seed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="bench", choices=["small", "medium", "bench"])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    name = os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_tenants_source"
    url = fresh_database(name)
    try:
        source = make_engine(url)
        migrate.upgrade(source)
        seed(source, Scale(args.scale))
        source.dispose()
        with tempfile.TemporaryDirectory(prefix="ferry-bench-tenants-") as tmp:
            rows = run(url, "", Path(tmp), args.repeat)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print_table(rows)


if __name__ == "__main__":
    main()
