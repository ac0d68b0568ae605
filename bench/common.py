"""What every benchmark shares: the database, timing, peak RSS, and the results table."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg

PG_ADMIN = os.environ.get("FERRY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    what: str
    n: int
    ferry_per_s: float
    baseline: str
    baseline_per_s: float
    ferry_peak_rss_mb: float
    note: str = ""
    # Figures a goal is judged on (bench/goals.py), e.g. {"p50_ms": 0.51}; also saved.
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ferry_per_s / self.baseline_per_s if self.baseline_per_s else 0.0


@dataclass
class Point:
    """One size of one path for the charts (bench/charts.py): Ferry's records/s and peak
    RSS at `n` records, beside its raw baseline's records/s at the same size (0: none)."""

    path: str
    n: int
    ferry_per_s: float
    baseline_per_s: float = 0.0
    rss_mb: float = 0.0
    baseline_rss_mb: float = 0.0


# Every point the benchmarks of this run measured, in order (saved with the rows).
POINTS: list[Point] = []


def point(path: str, n: int, ferry_per_s: float, baseline_per_s: float = 0.0,
          rss_mb: float = 0.0, baseline_rss_mb: float = 0.0) -> None:  # fmt: skip
    """Record one size of `path` for the charts."""
    POINTS.append(Point(path, n, ferry_per_s, baseline_per_s, rss_mb, baseline_rss_mb))


@dataclass
class Timing:
    median: float
    low: float
    high: float

    def spread_note(self, unit: str = "/s") -> str:
        """'min … max' when they differ from each other by more than 20%."""
        if self.high > self.low * 1.2:
            return f"min {self.low:,.0f}{unit}, max {self.high:,.0f}{unit}"
        return ""


def rate(n_of: Callable[[], int], repeat: int = 3) -> tuple[int, Timing]:
    """Run `n_of` `repeat` times; returns (records per run, rates median/min/max)."""
    rates = []
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = n_of()
        rates.append(n / (time.perf_counter() - t))
    return n, Timing(statistics.median(rates), min(rates), max(rates))


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set of process `pid` (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def fresh_database(name: str) -> str:
    """Drop and create database `name` on the bench PostgreSQL; returns its SQLAlchemy URL."""
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def database_url(name: str) -> str:
    """The SQLAlchemy URL of database `name` on the bench PostgreSQL."""
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def existing_records(name: str) -> int:
    """Records the seeded tables of database `name` hold (0: none, or no such database)."""
    dsn = database_url(name).replace("postgresql+psycopg://", "postgresql://", 1)
    tables = ("courses", "students", "enrollments", "grades", "attendance")
    tables += ("daily_performance", "highlights")
    try:
        with psycopg.connect(dsn) as conn:
            return sum(
                int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                for t in tables
            )
    except psycopg.Error:
        return 0


def print_table(rows: list[Row]) -> None:
    print("\n| what | n | Ferry /s | baseline | baseline /s | ratio | Ferry peak RSS | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.what} | {r.n:,} | {r.ferry_per_s:,.0f} | {r.baseline} | {r.baseline_per_s:,.0f} "
            f"| {r.ratio:.2f} | {_mb(r.ferry_peak_rss_mb)} | {r.note} |"
        )


def _mb(value: float) -> str:
    """Peak RSS for the table; rows that do not measure memory show a dash."""
    return f"{value:.0f} MB" if value else "-"


def save(rows: list[Row], extra: dict[str, object]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    payload = {
        "rows": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "points": [asdict(p) for p in POINTS],
        **extra,
    }
    path.write_text(json.dumps(payload, indent=2))
    return path


def raw_rows(dsn: str, semester: str | None = None, deleted: bool = False) -> int:
    """The raw baseline of a bundle or backup read: every row of `semester` (None: the
    whole database; `deleted`: soft-deleted rows too, as a backup holds them), read with
    server-side cursors into tuples."""
    from sqlalchemy.dialects import postgresql

    from ferry.datasets.query import export_query
    from ferry.datasets.school import SCHOOL

    n = 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        for entity in SCHOOL.in_order():
            query, _ = export_query(SCHOOL, entity, semester, deleted)
            sql = str(
                query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
            )
            with conn.cursor(name=f"raw_{entity.name}") as cur:
                cur.itersize = 2000
                cur.execute(sql)
                for _row in cur:
                    n += 1
    return n


def template_copy(source_url: str, name: str) -> str:
    """The DSN of database `name`, made afresh as a copy of the database at `source_url`
    (CREATE DATABASE ... TEMPLATE: the files copied, no rows read)."""
    source = source_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{source}"')
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
