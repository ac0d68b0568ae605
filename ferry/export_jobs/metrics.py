"""Prometheus metrics of entity export jobs, recorded in the long-lived export service
(so scheduled exports started by a CronJob's CLI show up too)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DURATION = Histogram(
    "ferry_export_duration_seconds",
    "Wall time of entity export jobs, from start to end.",
    ["type", "format", "status"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
RECORDS = Counter(
    "ferry_export_records_total",
    "Records written by completed entity export jobs.",
    ["type", "format"],
)
BYTES = Histogram(
    "ferry_export_bytes",
    "Size of finished entity export files in bytes.",
    ["type", "format"],
    buckets=tuple(float(4**i * 1024) for i in range(12)),  # 1 KiB .. 4 GiB
)
IN_FLIGHT = Gauge("ferry_export_jobs_in_flight", "Entity export jobs running in this process.")
JOBS = Counter(
    "ferry_export_jobs_total",
    "Entity export jobs that ended, by outcome.",
    ["type", "format", "status"],
)


def record_end(
    export_type: str,
    fmt: str,
    status: str,
    duration: float,
    records: int = 0,
    size: int | None = None,
) -> None:
    """Count one ended job; records and bytes only for completed ones."""
    DURATION.labels(export_type, fmt, status).observe(duration)
    JOBS.labels(export_type, fmt, status).inc()
    if size is not None:
        RECORDS.labels(export_type, fmt).inc(records)
        BYTES.labels(export_type, fmt).observe(size)
