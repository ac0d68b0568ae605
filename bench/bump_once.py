"""What an import's bookkeeping costs as it commits: the report-version bumps and the
touched semesters, as two calls (bump_for_import, touched_by: the import's changes read
three times) against one statement (bump_and_touched), on the same import, in turns.

    FERRY_BENCH_DB=name python -m bench.bump_once [--scale medium|bench] [--rounds 5]

Seeds the scale into a scratch database, exports its semester and imports it into an
empty one (every record created: the costliest case, as a first import of a semester),
then times each path in a transaction rolled back, alternating, and prints medians and
their ratio. Not part of `make bench`: the import rows there include this cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.common import fresh_database
from bench.imports import scratch_name
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.merge import run_import
from ferry.merge.model import MergeOptions
from ferry.reports.versions import bump_and_touched, bump_for_import, touched_by

SEMESTER = "2026-fall"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=["medium", "bench"], default="medium")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    source = make_engine(fresh_database(scratch_name("bump_src")))
    migrate.upgrade(source)
    seed(source, Scale(args.scale))
    events = list(session_events(source, SCHOOL, SessionRequest(SEMESTER)))
    source.dispose()
    target = make_engine(fresh_database(scratch_name("bump_dst")))
    migrate.upgrade(target)
    outcome = run_import(
        target, SCHOOL, events, MergeOptions(), requested_by="bench", source_sha256="x"
    )
    n = sum(len(b.records) for b in events if isinstance(b, Batch))
    print(f"imported {n:,} records ({args.scale}): {outcome.status.value}", flush=True)

    def two_calls() -> float:
        with target.connect() as conn:
            t = time.perf_counter()
            bump_for_import(conn, outcome.id, False)
            touched_by(conn, SCHOOL, outcome.id)
            took = time.perf_counter() - t
            conn.rollback()
        return took

    def one_statement() -> float:
        with target.connect() as conn:
            t = time.perf_counter()
            bump_and_touched(conn, SCHOOL, outcome.id, False)
            took = time.perf_counter() - t
            conn.rollback()
        return took

    old: list[float] = []
    new: list[float] = []
    for i in range(args.rounds):
        pair = (two_calls, one_statement) if i % 2 == 0 else (one_statement, two_calls)
        for f in pair:
            (old if f is two_calls else new).append(f())
    o, w = statistics.median(old), statistics.median(new)
    print(
        f"| bookkeeping of a {n:,}-record import | two calls {o:.2f} s "
        f"({min(old):.2f}-{max(old):.2f}) | one statement {w:.2f} s "
        f"({min(new):.2f}-{max(new):.2f}) | {w / o:.2f} of the two calls |"
    )
    target.dispose()


if __name__ == "__main__":
    main()
