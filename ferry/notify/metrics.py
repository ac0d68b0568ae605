"""Prometheus metrics of notification delivery, by channel.

With `metrics.school_label: true` (docs/tenants.md) the workers also count each settled
attempt and the outbox depth by the school whose outbox row it is (label `school`, a code
from the schools table: the series are bounded by the schools the installation has).
The families by channel alone keep their labels."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENT = Counter("ferry_notify_sent_total", "Deliveries accepted by the channel.", ["channel"])
FAILED = Counter(
    "ferry_notify_failed_total", "Deliveries refused for good (not retried).", ["channel"]
)
RETRIED = Counter(
    "ferry_notify_retried_total", "Attempts that did not deliver and will be retried.", ["channel"]
)
DEAD = Counter(
    "ferry_notify_dead_total", "Deliveries given up after the retry schedule.", ["channel"]
)
DEPTH = Gauge("ferry_notify_outbox_depth", "Outbox rows waiting for delivery.", ["channel"])
SCHOOL_ATTEMPTS = Counter(
    "ferry_notify_school_attempts_total",
    "Delivery attempts settled, by school, channel and outcome (sent, retried, failed, "
    "dead; only with metrics.school_label: true).",
    ["school", "channel", "outcome"],
)
SCHOOL_DEPTH = Gauge(
    "ferry_notify_school_outbox_depth",
    "Outbox rows waiting for delivery, by school (only with metrics.school_label: true).",
    ["school", "channel"],
)
LATENCY = Histogram(
    "ferry_notify_delivery_seconds",
    "From queueing a delivery to the channel accepting it.",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300, 1800, 7200, 86400),
)
