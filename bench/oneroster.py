"""OneRoster import against the json bundle import (issue 28: at least 0.5 of its records/s).

The bench dataset's roster and gradebook (the semester's courses, students, enrollments
and grades: what OneRoster carries) are written once as a json bundle and once as a
OneRoster 1.2 CSV zip (Ferry's own writer). Each is uploaded with ImportSession to a real
`ferry serve import` process on a freshly migrated empty database, interleaved per
repetition; records/s counts the records created.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Iterator
from pathlib import Path

from bench.common import Row
from bench.imports import ImportServer, scratch_database, upload
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Event, Header, Trailer
from ferry.bundle.formats.json import JsonBundle
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.oneroster.format import OneRosterBundle

SEMESTER = "2026-fall"
# What OneRoster has no records for: left out of both files, so both hold the same records.
NOT_ROSTER = ("attendance", "daily_performance", "highlights")


def _scratch_name() -> str:
    # Beside the run's own database name, so two runs on one server do not collide.
    return os.environ.get("FERRY_BENCH_DB", "ferry_bench") + "_oneroster"


def roster_only(events: Iterable[Event]) -> Iterator[Event]:
    """The bundle's events without the entities OneRoster has no records for (header and
    trailer counts made to match)."""
    for event in events:
        if isinstance(event, Header):
            for name in NOT_ROSTER:
                if name in event.metadata.counts:
                    del event.metadata.counts[name]
        elif isinstance(event, Batch) and event.entity in NOT_ROSTER:
            continue
        elif isinstance(event, Trailer):
            event.counts = {k: v for k, v in event.counts.items() if k not in NOT_ROSTER}
        yield event


def write_files(url: str, workdir: Path) -> tuple[Path, Path]:
    """The semester's roster and gradebook as a json bundle and as a OneRoster zip."""
    engine = make_engine(url)
    req = SessionRequest(semester=SEMESTER, batch_size=5000)
    out = workdir / "roster.json", workdir / "roster.zip"
    try:
        for path, fmt in zip(out, (JsonBundle(), OneRosterBundle()), strict=True):
            with path.open("wb") as f:
                fmt.write(roster_only(session_events(engine, SCHOOL, req)), f)
    finally:
        engine.dispose()
    return out


def _import(path: Path, workdir: Path) -> tuple[int, float, float]:
    """(records created, records/s, server peak RSS MB) of one upload into an empty db."""
    server = ImportServer(scratch_database(_scratch_name()), workdir)
    try:
        result, seconds = upload(server, path)
        if result.total_errors:
            raise AssertionError(f"{path.name}: {result.total_errors} errors {result.errors[:3]}")
        n = sum(s.created for s in result.summaries)
        return n, n / seconds, server.rss_mb()
    finally:
        server.stop()


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """One row: the OneRoster zip's import rate against the json bundle's, same records."""
    json_file, zip_file = write_files(url, workdir)
    rates: dict[str, list[float]] = {"json": [], "zip": []}
    rss: list[float] = []
    n = {"json": 0, "zip": 0}
    for i in range(repeat):
        order = ("json", "zip") if i % 2 == 0 else ("zip", "json")
        for kind in order:
            count, per_s, peak = _import(json_file if kind == "json" else zip_file, workdir)
            n[kind] = count
            rates[kind].append(per_s)
            if kind == "zip":
                rss.append(peak)
    if n["json"] != n["zip"]:
        raise AssertionError(f"json created {n['json']:,} records, OneRoster {n['zip']:,}")
    zip_m, json_m = statistics.median(rates["zip"]), statistics.median(rates["json"])
    return [
        Row(
            f"ImportSession OneRoster 1.2 zip (roster + gradebook of {SEMESTER}) into an empty db",
            n["zip"],
            zip_m,
            "ImportSession json bundle of the same records into an empty db",
            json_m,
            max(rss),
            f"goal ratio >= 0.5; zip {zip_file.stat().st_size / 1e6:.0f} MB, json "
            f"{json_file.stat().st_size / 1e6:.0f} MB; OneRoster {min(rates['zip']):,.0f}-"
            f"{max(rates['zip']):,.0f}/s, json {min(rates['json']):,.0f}-"
            f"{max(rates['json']):,.0f}/s; {repeat} runs each, interleaved; RSS = server VmHWM",
        )
    ]
