"""`make bench`: seed the bench dataset in PostgreSQL, run every benchmark, print one table.

    python -m bench [--scale bench|small] [--repeat 3] [--only stream,bundle,...]

Each benchmark sets Ferry beside a raw baseline measured in the same run (see README).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import (
    auth,
    backup,
    bundle,
    export_jobs,
    formats,
    gateway,
    imports,
    notify,
    oneroster,
    reports,
    scope_checks,
    stream_session,
)
from bench.common import Row, fresh_database, print_table, save
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed

SEMESTER = "2026-fall"
Bench = Callable[[str, str, Path, int], list[Row]]
BENCHES: dict[str, Bench] = {
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
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=["bench", "small"], default="bench")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(chosen) - set(BENCHES)
    if unknown:
        parser.error(f"unknown benchmarks {sorted(unknown)}; known: {', '.join(BENCHES)}")

    # FERRY_BENCH_DB: another database name, so two runs on one server do not collide.
    url = fresh_database(os.environ.get("FERRY_BENCH_DB", "ferry_bench"))
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
    path = save(
        rows,
        {"scale": args.scale, "records": total, "seed_seconds": seed_seconds, "seconds": timings},
    )
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
