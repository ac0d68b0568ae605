"""`make bench`: seed the bench dataset in PostgreSQL, run every benchmark, print one table.

    python -m bench [--scale bench|small|large] [--repeat N] [--only stream,bundle,...]
                    [--sizes 100000,1000000,10000000] [--paths sessions,csv] [--reuse]

Each benchmark sets Ferry beside a raw baseline measured in the same run (see README).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from bench import (
    auth,
    backup,
    bundle,
    charts,
    export_jobs,
    formats,
    gateway,
    imports,
    notify,
    oneroster,
    plans,
    reports,
    scale,
    scope_checks,
    semesters,
    stream_session,
    tenants,
)
from bench.common import Row, database_url, existing_records, fresh_database, print_table, save
from bench.goals import judge, print_goals
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed

SEMESTER = "2026-fall"
FIGURES = Path(__file__).resolve().parent / "figures"
Bench = Callable[[str, str, Path, int], list[Row]]
BENCHES: dict[str, Bench] = {
    "semesters": semesters.run,
    "scale": lambda url, dsn, wd, n: scale.run(url, dsn, wd, n, (100_000, 1_000_000)),
    "stream": lambda url, dsn, wd, n: [stream_session.run(url, dsn, SEMESTER, wd, n)],
    "bundle": bundle.run,
    "formats": formats.run,
    "export_jobs": export_jobs.run,
    "imports": imports.run,
    "gateway": gateway.run,
    "auth": auth.run,
    "notify": notify.run,
    "reports": reports.run,
    "backup": backup.run,
    "scope_checks": scope_checks.run,
    "scope_probe": scope_checks.probe,
    "oneroster": oneroster.run,
    "plans": plans.run,  # issue 29: plan digests, bases of the three-way merge
    "tenants": tenants.run,  # issue 26: RLS on vs off, the dataset split across 10 schools
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scale",
        choices=["bench", "small", "large"],
        default="bench",
        help="large: ten semesters (~10M records) and the `scale` benchmark alone, unless "
        "--only says otherwise",
    )
    parser.add_argument(
        "--sizes",
        default="",
        help="record counts for the `scale` benchmark (default 100000,1000000 and, at the "
        "large scale, 10000000)",
    )
    parser.add_argument(
        "--paths",
        default=",".join(scale.GROUPS),
        help="the `scale` benchmark's path groups, comma-separated (default all: "
        f"{','.join(scale.GROUPS)})",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="runs per measurement (default 3; at --scale large 1: one run of every path "
        "at 10M already takes hours on a loaded machine)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated subset (default: all but `scale`; at --scale large, `scale`)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the database of an earlier run when it holds data (while iterating; "
        "a figure for a closing note comes from a fresh run)",
    )
    args = parser.parse_args()
    args.repeat = args.repeat or (1 if args.scale == "large" else 3)
    if not args.only:
        everyday = [b for b in BENCHES if b != "scale"]
        args.only = "scale" if args.scale == "large" else ",".join(everyday)
    sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip()) or (
        (100_000, 1_000_000, 10_000_000) if args.scale == "large" else (100_000, 1_000_000)
    )
    groups = tuple(p.strip() for p in args.paths.split(",") if p.strip())
    if set(groups) - set(scale.GROUPS):
        parser.error(f"unknown --paths {sorted(set(groups) - set(scale.GROUPS))}")
    BENCHES["scale"] = lambda url, dsn, wd, n: scale.run(url, dsn, wd, n, sizes, groups)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(BENCHES)}")

    # FERRY_BENCH_DB: another database name, so two runs on one server do not collide.
    name = os.environ.get("FERRY_BENCH_DB", "ferry_bench")
    held = existing_records(name) if args.reuse else 0
    if held:
        url, seed_seconds, total = database_url(name), 0.0, held
        print(f"reusing {total:,} records in database {name} (--reuse)", flush=True)
    else:
        url = fresh_database(name)
        engine = make_engine(url)
        t = time.perf_counter()
        migrate.upgrade(engine)
        result = seed(engine, Scale(args.scale))
        seed_seconds = time.perf_counter() - t
        engine.dispose()
        total = sum(result.counts.values())
        print(
            f"seeded {total:,} records ({args.scale}) into PostgreSQL in {seed_seconds:.1f}s",
            flush=True,
        )
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)

    rows: list[Row] = []
    timings: dict[str, float] = {}
    for name in chosen:
        t = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"ferry-bench-{name}-") as tmp:
            new = BENCHES[name](url, dsn, Path(tmp), args.repeat)
        timings[name] = time.perf_counter() - t
        rows += new
        print_table(new)
        print(f"({name}: {timings[name]:.0f}s)", flush=True)
    print("\n## All results")
    print_table(rows)
    verdicts = judge(rows)
    print_goals(verdicts)
    path = save(
        rows,
        {
            "scale": args.scale,
            "records": total,
            "seed_seconds": seed_seconds,
            "seconds": timings,
            "goals": [asdict(v) for v in verdicts],
        },
    )
    print(f"\nwritten to {path}")
    # The charts go beside the code (bench/figures/, committed: the README shows them).
    for chart in charts.write(rows, FIGURES):
        print(f"chart: {chart}")


if __name__ == "__main__":
    main()
