"""What the header (scope) check costs an import of the bench dataset (issue 21: at most 3%).

The semester's json bundle (the bench dataset, about one million records) is imported by
the merge engine (`run_import`, json raw runs, as ImportSession reads it) in this process,
three times per repetition: with Ferry's checks, with the header check in its id-probe
form (what it was before the parent lookup read the semester), and with the header check
switched off (the engine's `scope_condition` patched to "no condition"), each arm first in
turn so drift on a shared machine falls on all alike. Each import goes into a freshly migrated
empty database, then the same bundle is imported again with `replace` (every record
unchanged; the replace is scoped to the semester in both arms). A row compares Ferry with
itself: the baseline is the same import without the check.

On a shared machine two runs of the same import differ by 20-50%, far more than the 3%
asked, so besides the import rates (medians, and the median of each interleaved pair's
ratio) the row times the part of the import the check lives in: the check is a condition
inside the statements that resolve each entity's rows (ferry.merge.header), so the
engine's own `resolve <entity>` phase timings (its DEBUG log) are summed per import, and
the check's cost is the median of (resolve time with the check - without it) over the
import's whole time without it.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from unittest import mock

import sqlalchemy as sa

from bench.common import Row
from bench.imports import export_bundle, scratch_database
from ferry.bundle.formats.base import BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.query import key_lookup
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.merge import MergeOptions, Status, Strategy, field_rules, run_import
from ferry.merge.header import ScopeCheck

SEMESTER = "2026-fall"


def _scratch_name() -> str:
    # Beside the run's own database name, so two runs on one server do not collide.
    return os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_scope"


@contextmanager
def _without_header_check() -> Iterator[None]:
    with mock.patch("ferry.merge.run.scope_condition", lambda *a, **k: ScopeCheck()):
        yield


class _Phases(logging.Handler):
    """Sums the merge engine's `resolve <entity>: <s>s` phase timings (its DEBUG log)."""

    PATTERN = re.compile(r"^resolve \S+.*: ([0-9.]+)s$")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.resolve = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        m = self.PATTERN.match(record.getMessage())
        if m:
            self.resolve += float(m.group(1))


@contextmanager
def _phases() -> Iterator[_Phases]:
    logger = logging.getLogger("ferry.merge.run")
    handler, level = _Phases(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _import(url: str, path: Path, strategy: Strategy) -> tuple[int, float, float]:
    """(records, seconds, seconds resolving) of one import of the bundle at `path`."""
    engine = make_engine(url)
    try:
        with path.open("rb") as f:
            events = JsonBundle().read_raw(f, BundleLimits(), field_rules(SCHOOL, engine.dialect))
            with _phases() as phases:
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
    return sum(s.created + s.updated + s.unchanged for s in out.summaries), seconds, phases.resolve


ARMS = ("lookup", "probe", "off")


def _arm(arm: str) -> Any:
    """The engine as this arm runs it: Ferry's check ("lookup": the semester read in the
    resolve statement's parent lookup), the same check as an id probe ("probe": each
    parent id looked up among the semester's ids, as before the lookup read it; still
    the path of a parent scoped through children), or no check ("off")."""
    if arm == "off":
        return _without_header_check()
    if arm == "probe":
        return mock.patch("ferry.merge.header.scope_in_lookup", lambda *a, **k: False)
    return nullcontext()


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """Two rows: the import into an empty database and the replace re-import, each with
    the header check against the same without it (same run, interleaved); the note sets
    the id-probe form of the check (before the parent lookup read the semester) beside."""
    bundle = workdir / "bundle.json"
    export_bundle(url, bundle)
    # (kind, arm) -> [(seconds, seconds resolving)], one per repetition
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    n = 0
    for i in range(repeat):
        for arm in ARMS[i % 3 :] + ARMS[: i % 3]:  # each arm first in turn
            with _arm(arm):
                target = scratch_database(_scratch_name())
                for kind, strategy in (("fresh", Strategy.UPDATE), ("replace", Strategy.REPLACE)):
                    n, seconds, resolving = _import(target, bundle, strategy)
                    runs.setdefault((kind, arm), []).append((seconds, resolving))
    rows = []
    names = {
        "fresh": f"merge engine: json bundle of {SEMESTER} into an empty db, header check on",
        "replace": "merge engine: same bundle again with replace (all unchanged), header check on",
    }
    for kind, what in names.items():
        on, off, old = runs[(kind, "lookup")], runs[(kind, "off")], runs[(kind, "probe")]
        on_rates, off_rates = [n / s for s, _ in on], [n / s for s, _ in off]
        pairs = statistics.median(a[0] / b[0] - 1 for a, b in zip(on, off, strict=True)) * 100
        whole = statistics.median(s for s, _ in off)
        resolve_on = statistics.median(r for _, r in on)
        resolve_off = statistics.median(r for _, r in off)
        resolve_old = statistics.median(r for _, r in old)
        cost = (resolve_on - resolve_off) / whole * 100
        cost_old = (resolve_old - resolve_off) / whole * 100
        rows.append(
            Row(
                what,
                n,
                statistics.median(on_rates),
                "Ferry itself, the same import with the header check off",
                statistics.median(off_rates),
                0.0,
                f"check cost {cost:+.1f}% of the import time (goal <= 3%): resolving "
                f"{resolve_on:.1f}s with it vs {resolve_off:.1f}s without, of {whole:.1f}s "
                f"(as an id probe: {resolve_old:.1f}s, {cost_old:+.1f}%); whole imports "
                f"{pairs:+.1f}% (median of interleaved pairs; on {min(on_rates):,.0f}-"
                f"{max(on_rates):,.0f}/s, off {min(off_rates):,.0f}-{max(off_rates):,.0f}/s); "
                f"{repeat} runs each",
            )
        )
    return rows


def probe(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """One row: the header check's own SQL alone, on the bench dataset's tables.

    For every scoped entity, what the check adds to its resolve statement (its own
    semester column compared; or its parent's key lookup, joined as resolve joins it,
    carrying `in_scope`, compared) is evaluated over the entity's rows, and timed
    against the same scan without it: the check's cost without the noise of a whole
    import, to set beside the import's time. The SQL is the engine's own
    (ferry.datasets.query.key_lookup)."""
    engine = make_engine(url)
    semester_of = "2026-fall"
    scans: list[tuple[str, str]] = []  # (with the condition, without)
    rows = 0
    try:
        with engine.connect() as conn:
            for entity in SCHOOL.in_order():
                if entity.shared or not entity.scope:
                    continue
                table = entity.table.name
                for rule in entity.scope:
                    if rule.column:
                        col = f"x.{rule.column}"
                        cond = f"({col} IS NULL OR {col} <> '{semester_of}')"
                    elif rule.via_parent:
                        parent = SCHOOL.entity(entity.reference_for(rule.via_parent).parent)
                        if parent.shared or not parent.scope:
                            continue
                        # As resolve joins the parent's key lookup: with its in_scope
                        # (the check) and without.
                        ref = f"x.{rule.via_parent}"
                        lookup = key_lookup(SCHOOL, parent, semester_of)
                        plain = key_lookup(SCHOOL, parent)
                        scans.append(
                            (
                                # FILTER, not WHERE: as in resolve's CASE, every row
                                # is joined (a WHERE would shrink the lookup first).
                                f"SELECT count(*) FILTER (WHERE p.in_scope = 0) FROM {table} "
                                f"x JOIN ({lookup}) p ON p.id = {ref}",
                                f"SELECT count(*) FROM {table} x JOIN ({plain}) p ON p.id = {ref}",
                            )
                        )
                        continue
                    else:
                        continue
                    base = f"SELECT count(*) FROM {table} x"
                    scans.append((f"{base} WHERE {cond}", base))
                rows += conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            timings: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(repeat):
                for checked in (True, False):
                    t = time.perf_counter()
                    for with_check, without in scans:
                        conn.execute(sa.text(with_check if checked else without)).scalar_one()
                    timings[checked].append(time.perf_counter() - t)
    finally:
        engine.dispose()
    on, off = statistics.median(timings[True]), statistics.median(timings[False])
    return [
        Row(
            f"header check's SQL alone over the scoped tables of {semester_of} (scan with it)",
            rows,
            rows / on,
            "the same scans without the check",
            rows / off,
            0.0,
            f"the check adds {on - off:.2f}s over {rows:,} records; set that beside the import "
            f"time of the scope_checks row; {repeat} runs each",
        )
    ]
