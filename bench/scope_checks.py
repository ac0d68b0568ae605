"""What the header (scope) check costs an import of the bench dataset (issue 21: at most 3%).

The semester's json bundle (the bench dataset, about one million records) is imported by
the merge engine (`run_import`, json raw runs, as ImportSession reads it) in this process,
twice per repetition: with Ferry's checks, and with the header check switched off (the
engine's `scope_condition` patched to "no condition"), alternating which goes first so
drift on a shared machine falls on both alike. Each import goes into a freshly migrated
empty database, then the same bundle is imported again with `replace` (every record
unchanged; the replace is scoped to the semester in both arms). A row compares Ferry with
itself: the baseline is the same import without the check.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

from bench.common import Row
from bench.imports import export_bundle, scratch_database
from ferry.bundle.formats.base import BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import MergeOptions, Status, Strategy, field_rules, run_import

SEMESTER = "2026-fall"


def _scratch_name() -> str:
    # Beside the run's own database name, so two runs on one server do not collide.
    return os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_scope"


@contextmanager
def _without_header_check() -> Iterator[None]:
    with mock.patch("ferry.merge.run.scope_condition", lambda *a, **k: ([], [])):
        yield


def _import(url: str, path: Path, strategy: Strategy) -> tuple[int, float]:
    """(records, seconds) of one import of the bundle at `path` into `url`."""
    engine = make_engine(url)
    try:
        with path.open("rb") as f:
            events = JsonBundle().read_raw(f, BundleLimits(), field_rules(SCHOOL, engine.dialect))
            t = time.perf_counter()
            out = run_import(
                engine,
                SCHOOL,
                events,
                MergeOptions(strategy=strategy),
                requested_by="bench",
                source_sha256="bench",
            )
            seconds = time.perf_counter() - t
    finally:
        engine.dispose()
    if out.status is not Status.COMPLETED:
        raise AssertionError(f"bench import failed: {out.error_message} {out.errors[:3]}")
    return sum(s.created + s.updated + s.unchanged for s in out.summaries), seconds


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """Two rows: the import into an empty database and the replace re-import, each with
    the header check against the same without it (same run, interleaved)."""
    bundle = workdir / "bundle.json"
    export_bundle(url, bundle)
    rates: dict[tuple[str, bool], list[float]] = {}
    n = 0
    for i in range(repeat):
        for checked in (True, False) if i % 2 == 0 else (False, True):
            ctx: Any = nullcontext() if checked else _without_header_check()
            with ctx:
                target = scratch_database(_scratch_name())
                n, seconds = _import(target, bundle, Strategy.UPDATE)
                rates.setdefault(("fresh", checked), []).append(n / seconds)
                n, seconds = _import(target, bundle, Strategy.REPLACE)
                rates.setdefault(("replace", checked), []).append(n / seconds)
    rows = []
    names = {
        "fresh": f"merge engine: json bundle of {SEMESTER} into an empty db, header check on",
        "replace": "merge engine: same bundle again with replace (all unchanged), header check on",
    }
    for kind, what in names.items():
        on, off = rates[(kind, True)], rates[(kind, False)]
        on_m, off_m = statistics.median(on), statistics.median(off)
        cost = (off_m / on_m - 1) * 100  # extra time per record, in %
        rows.append(
            Row(
                what,
                n,
                on_m,
                "Ferry itself, the same import with the header check off",
                off_m,
                0.0,
                f"check costs {cost:+.1f}% of the import time (goal <= 3%); "
                f"on {min(on):,.0f}-{max(on):,.0f}/s, off {min(off):,.0f}-{max(off):,.0f}/s, "
                f"{repeat} runs each, interleaved",
            )
        )
    return rows
