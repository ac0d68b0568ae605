"""When a delivery that did not go through is tried next, or given up.

The schedule is configured (notify.retry_schedule_seconds, default 1 min, 5 min, 30 min,
then every 2 h, its last delay repeating) and each delay is scattered by up to
`retry_jitter` either way so replicas that failed together do not retry together. A row
still undelivered `give_up_after_seconds` (default 4 days) after it was queued is dead:
RFC 5321 4.5.4.1 asks for days, not minutes.
"""

from __future__ import annotations

import datetime as dt
import random

from ferry.config import NotifySettings

# A Retry-After further away than this is not honoured beyond it.
MAX_RETRY_AFTER = 86400.0


def delay(settings: NotifySettings, attempts: int, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` (>= 1) failed tries."""
    schedule = settings.retry_schedule_seconds
    base = schedule[min(max(attempts, 1), len(schedule)) - 1]
    j = settings.retry_jitter
    r = (rng or random).uniform(-j, j) if j else 0.0
    return max(0.0, base * (1 + r))


def next_attempt(
    settings: NotifySettings,
    attempts: int,
    created_at: dt.datetime,
    now: dt.datetime,
    retry_after: float | None = None,
) -> dt.datetime | None:
    """When to try again, or None when the row should be given up (dead)."""
    wait = delay(settings, attempts)
    if retry_after is not None:
        wait = max(0.0, min(retry_after, MAX_RETRY_AFTER))
    when = now + dt.timedelta(seconds=wait)
    if (when - created_at).total_seconds() > settings.give_up_after_seconds:
        return None
    return when
