"""`make bench`: seed the bench dataset in PostgreSQL, run every benchmark, print one table.

python -m bench [--scale bench|small] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench import stream_session
from bench.common import fresh_database, print_table, save
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", choices=["bench", "small"], default="bench")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    url = fresh_database("ferry_bench")
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
    semester = "2026-fall"
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(stream_session.run(url, dsn, semester, Path(tmp), args.repeat))
        print_table(rows[-1:])
    print_table(rows)
    path = save(rows, {"scale": args.scale, "records": total, "seed_seconds": seed_seconds})
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
