"""Prometheus metrics of the report cache."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HITS = Counter("ferry_report_cache_hits_total", "Report cache hits.", ["kind"])
MISSES = Counter("ferry_report_cache_misses_total", "Report cache misses.", ["kind"])
ERRORS = Counter(
    "ferry_report_cache_errors_total",
    "Report cache backend calls that failed (the report was computed and served).",
    ["backend", "op"],
)
BREAKER_OPEN = Gauge(
    "ferry_report_cache_breaker_open",
    "1 while the cache backend's circuit breaker is open (calls skip the backend).",
    ["backend"],
)
COMPUTE = Histogram(
    "ferry_report_compute_seconds",
    "Time to compute a report that was not in the cache.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
