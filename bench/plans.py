"""Plans and local edits (issue 29), in-process on PostgreSQL (an A/B of the merge engine
in the same run, so no wire is involved on either side):

1. A dry run of the 1M-record bench bundle over a database that holds it (the preview of
   a re-import: every row is read) with its plan (digest over every entity's statuses
   and row versions) against the same dry run with the plan's fingerprints switched off
   (the dry run as it was before plans). Goal: >= 0.8.
3. The same dry run writing every record's decision (plan_records, ferry.merge.planfile)
   to a file against the dry run with its digest alone: what the full plan costs. Goal:
   >= 0.8 (on PostgreSQL each line is composed in SQL in the resolve's own pass and
   read back in position order, 5,000 a write).
4. That dry run writing every record's decision against the dry run as it was before
   plans (no fingerprints, no records): the whole plan against today's dry run, the
   issue's goal read directly (>= 0.8). Both sides alternate in the same run. The "before"
   side still carries each matched row's updated_at in the resolve's status table (one
   column the digest reads), the only plan work it keeps.
2. The bundle imported into an empty database with keep_local_edits against the same
   import without. Goal: keeping bases costs <= 10% (ratio >= 0.9). (A row is its own
   base until a local edit; imports write bases only for rows that have one.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import Row, Timing
from bench.imports import export_bundle, scratch_database
from ferry.bundle.formats.base import BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import MergeOptions, field_rules, run_import
from ferry.merge import digest as plan_digest

# Beside the run's own database (FERRY_BENCH_DB), so that two runs never collide.
SCRATCH = os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_plans"


@contextmanager
def _without_plan() -> Iterator[None]:
    """The dry run as before plans: no fingerprint statements."""
    entity, scope = plan_digest.entity_part, plan_digest.scope_part
    plan_digest.entity_part = lambda *a, **k: ""  # type: ignore[assignment]
    plan_digest.scope_part = lambda *a, **k: ""  # type: ignore[assignment]
    try:
        yield
    finally:
        plan_digest.entity_part, plan_digest.scope_part = entity, scope


@contextmanager
def _file_sink(folder: Path, name: str) -> Iterator[Any]:
    with (folder / f"plan-{name}.jsonl").open("wb") as f:
        yield f


def _import(url: str, path: Path, sink: Any = None, **options: Any) -> tuple[int, float]:
    engine = make_engine(url)
    try:
        rules = field_rules(SCHOOL, engine.dialect)
        with path.open("rb") as f:
            t = time.perf_counter()
            out = run_import(
                engine,
                SCHOOL,
                JsonBundle().read_raw(f, BundleLimits(), rules),
                MergeOptions(backup_before=False, **options),
                requested_by="bench",
                source_sha256="bench",
                plan_sink=sink,
            )
            seconds = time.perf_counter() - t
        if out.total_errors or not out.summaries:
            raise AssertionError(f"bench import failed: {out.error_message or out.errors[:3]}")
        n = sum(
            s.created + s.updated + s.unchanged + s.skipped + s.unmatched for s in out.summaries
        )
        return n, seconds
    finally:
        engine.dispose()


def _timing(rates: list[float]) -> Timing:
    ordered = sorted(rates)
    return Timing(ordered[len(ordered) // 2], ordered[0], ordered[-1])


def _ab(repeat: int, a: Callable[[], tuple[int, float]], b: Callable[[], tuple[int, float]]) -> Any:
    """Alternate a and b `repeat` times each (noise hits both alike)."""
    ra, rb, n = [], [], 0
    for _ in range(repeat):
        n, s = a()
        ra.append(n / s)
        n, s = b()
        rb.append(n / s)
    return n, _timing(ra), _timing(rb)


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    path = workdir / "bundle.json"
    export_bundle(url, path)

    held = scratch_database(SCRATCH)
    _import(held, path)  # the database holds the bundle: a preview reads every row

    def planned() -> tuple[int, float]:
        return _import(held, path, dry_run=True)

    def unplanned() -> tuple[int, float]:
        with _without_plan():
            return _import(held, path, dry_run=True)

    n, plan, plain = _ab(repeat, planned, unplanned)

    def every_record() -> tuple[int, float]:
        return _import(
            held, path, lambda i: _file_sink(workdir, i), dry_run=True, plan_records=True
        )

    n3, records, digest_only = _ab(repeat, every_record, planned)
    n4, whole, before = _ab(repeat, every_record, unplanned)
    for old in workdir.glob("plan-*.jsonl"):
        old.unlink()

    def with_bases() -> tuple[int, float]:
        return _import(scratch_database(SCRATCH), path, keep_local_edits=True)

    def without() -> tuple[int, float]:
        return _import(scratch_database(SCRATCH), path)

    n2, bases, two_way = _ab(repeat, with_bases, without)
    return [
        Row(
            "dry run with its plan (digest over statuses and row versions), 1M bundle over "
            "a db holding it (Ferry vs itself)",
            n,
            plan.median,
            "the same dry run without the plan's fingerprints",
            plain.median,
            0.0,
            "; ".join(s for s in (plan.spread_note(), plain.spread_note(), "in-process") if s),
        ),
        Row(
            "dry run writing every record's decision (plan_records, JSON Lines to a file), "
            "1M bundle over a db holding it (Ferry vs itself)",
            n3,
            records.median,
            "the same dry run with its digest and samples alone",
            digest_only.median,
            0.0,
            "; ".join(
                s for s in (records.spread_note(), digest_only.spread_note(), "in-process") if s
            ),
        ),
        Row(
            "dry run with its whole plan (digest and every record's decision to a file), "
            "1M bundle over a db holding it (Ferry vs itself)",
            n4,
            whole.median,
            "the same dry run as before plans (no fingerprints, no records)",
            before.median,
            0.0,
            "; ".join(s for s in (whole.spread_note(), before.spread_note(), "in-process") if s),
        ),
        Row(
            "import into an empty db with keep_local_edits (three-way bases) (Ferry vs itself)",
            n2,
            bases.median,
            "the same import two-way",
            two_way.median,
            0.0,
            "; ".join(s for s in (bases.spread_note(), two_way.spread_note(), "in-process") if s),
        ),
    ]
