"""Report cache backends (`ferry.caches` plugins: memory, redis) and what sits on top of
them: a circuit breaker, stats, and single flight (ReportCache in flight.py)."""
