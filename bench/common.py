"""What every benchmark shares: the database, timing, peak RSS, and the results table."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
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

    @property
    def ratio(self) -> float:
        return self.ferry_per_s / self.baseline_per_s if self.baseline_per_s else 0.0


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
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


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
    payload = {"rows": [{**asdict(r), "ratio": r.ratio} for r in rows], **extra}
    path.write_text(json.dumps(payload, indent=2))
    return path
