"""Row-level security on against off for imports into one school (docs/tenants.md; issue
26's goal is within 10%). `make bench` measures the goal itself with bench.tenants (10
schools; import, stream, report miss); this one, on its own:

    FERRY_BENCH_DB=<yours> python -m bench.tenants_rls [--scale medium] [--rounds 3]

Per round and mode, a fresh database gets a school `north` and one semester bundle is
imported into it twice (into an empty school: every record created; again: unchanged),
once as an app role that row-level security binds and once as the superuser, which
bypasses it; the medians are printed with their ratio. Databases are named after
FERRY_BENCH_DB, the role after it too; all are dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import psycopg
import sqlalchemy as sa

from bench.common import PG_ADMIN, fresh_database
from ferry.bundle.events import session_events
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate, roles, tenant
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.merge import MergeOptions, run_import


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="medium", choices=["small", "medium", "bench"])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base = os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_rls"
    source = make_engine(fresh_database(base + "_source"))
    migrate.upgrade(source)
    seed(source, Scale(args.scale), seed=3)
    events = list(session_events(source, SCHOOL, SessionRequest("2026-fall")))
    source.dispose()
    role = base + "_app"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{base}_source" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD 'bench'")
    took: dict[tuple[str, str], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for mode in ("on", "off"):
                url = fresh_database(base)
                platform = make_engine(url)
                migrate.upgrade(platform)
                roles.hand_over(platform, role)
                with platform.begin() as conn:
                    school = conn.execute(
                        sa.text(
                            "INSERT INTO schools (code, name, created_at) "
                            "VALUES ('north', 'North', now()) RETURNING id"
                        )
                    ).scalar_one()
                # A fresh engine in both modes: neither starts with warm connections.
                app_url = sa.make_url(url)
                if mode == "on":
                    app_url = app_url.set(username=role, password="bench")
                app = make_engine(app_url.render_as_string(hide_password=False))
                with tenant.acting_for(school):
                    for kind in ("create", "again"):
                        started = time.perf_counter()
                        run_import(
                            app,
                            SCHOOL,
                            events,
                            MergeOptions(),
                            requested_by="bench",
                            source_sha256="bench",
                        )
                        took.setdefault((mode, kind), []).append(time.perf_counter() - started)
                app.dispose()
                platform.dispose()
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{base}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
    records = sum(len(getattr(e, "records", ())) for e in events)
    print(f"{records:,} records, {args.rounds} rounds, medians:")
    for kind in ("create", "again"):
        on = statistics.median(took[("on", kind)])
        off = statistics.median(took[("off", kind)])
        print(f"  {kind:6} RLS on {on:7.3f} s  off {off:7.3f} s  on/off {on / off:.3f}")


if __name__ == "__main__":
    main()
