"""A Redis that is down or never answers costs the report calls next to nothing once the
breaker is open: its trial is a PING on a thread of its own, and the call that starts it
waits at most breaker_trial_wait_seconds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ferry.app import App
from ferry.cache.breaker import CircuitBreaker
from ferry.reports.engine import ReportEngine
from ferry.reports.student import Scope
from tests.reports.helpers import SEM, BlackHole


def _until(cond: Callable[[], bool], seconds: float = 5) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def test_the_trial_runs_off_the_callers_path() -> None:
    release = threading.Event()
    probes: list[str] = []

    def hung() -> None:
        probes.append("started")
        release.wait(30)
        probes.append("answered")
        raise ConnectionError("still down")

    b = CircuitBreaker("hung", failures=1, reset_seconds=0.05, probe=hung, trial_wait=0.02)
    b.failure()
    assert b.state == "open" and not b.allow()
    assert _until(lambda: b.state == "half_open")
    assert not b.allow()  # started the trial and returned while it hangs
    assert _until(lambda: probes == ["started"])
    assert not b.allow()  # the trial is under way: no second one
    assert probes == ["started"]
    release.set()
    assert _until(lambda: b.state == "open")  # the trial failed: open for another reset
    assert probes == ["started", "answered"]


def test_a_probe_that_answers_closes_the_breaker_for_its_caller() -> None:
    b = CircuitBreaker("back", failures=1, reset_seconds=0.05, probe=lambda: None, trial_wait=30)
    b.failure()
    assert not b.allow()
    assert _until(lambda: b.state == "half_open")
    assert b.allow() and b.state == "closed"  # waited for the answer (well within 30 s)


def test_without_a_probe_the_callers_call_is_the_trial() -> None:
    b = CircuitBreaker("plain", failures=1, reset_seconds=0.05)
    b.failure()
    assert _until(lambda: b.state == "half_open")
    assert b.allow()  # this caller tries
    assert not b.allow()  # one at a time
    b.success()
    assert b.state == "closed"


def test_black_holed_redis_is_not_asked_again_once_open(
    make_app: Callable[..., App], school_url: str
) -> None:
    hole = BlackHole()
    try:
        app = make_app(
            school_url,
            FERRY_REDIS_URL=f"redis://127.0.0.1:{hole.port}/0",
            FERRY_PLUGINS_SERVICES_REPORTS_CACHE_BACKEND="redis",
            FERRY_PLUGINS_CACHES_REDIS_BREAKER_RESET_SECONDS="0.2",
            FERRY_PLUGINS_SERVICES_REPORTS_CACHE_NEAR_BYTES="0",  # each read: Redis or nothing
        )
        e = ReportEngine.from_app(app)
        scope = Scope(semester=SEM)
        for _ in range(2):  # each waits the socket timeout (and its retry): then it opens
            assert not e.student("S1", scope)[1]
        assert e.cache.breaker.state == "open" and e.stats().errors == 2
        end = time.monotonic() + 1.5  # several resets, so several (hung) trials
        while time.monotonic() < end:
            report, cached = e.student("S1", scope)
            assert report.student_id == "S1" and not cached
        # No call asked the black hole again: only the trials (PINGs off the calls' path).
        assert e.stats().errors == 2 and e.stats().hits == 0
    finally:
        hole.close()


class Slow:
    """A backend that is back, but whose first answer (the trial's PING) is slow."""

    def __init__(self, answer: threading.Event, up: bool = True) -> None:
        self.answer = answer
        self.up = up
        self.data: dict[str, bytes] = {}
        self.sets = 0

    def ping(self) -> None:
        self.answer.wait(30)
        if not self.up:
            raise ConnectionError("down")

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        self.sets += 1
        self.data[key] = value

    def lock(self, key: str, timeout: float, blocking_timeout: float) -> None:
        return None


def test_a_trial_that_answers_while_the_call_computes_still_gets_the_entry() -> None:
    from ferry.cache.report_cache import ReportCache

    answer = threading.Event()
    backend = Slow(answer)
    breaker = CircuitBreaker("slow", 1, 0.05, probe=backend.ping, trial_wait=0.001)
    cache = ReportCache(backend, "slow", 60, breaker=breaker)
    breaker.failure()
    assert _until(lambda: breaker.state == "half_open")

    def compute() -> bytes:  # the trial answers while this call computes
        answer.set()
        assert _until(lambda: breaker.state == "closed")
        return b"report"

    # The trial outlived the wait: the read was skipped, not failed; the breaker closed
    # before the write, so the entry is there for the next call.
    assert cache.get_or_compute("student", "k", compute) == (b"report", False)
    assert backend.sets == 1
    assert cache.get_or_compute("student", "k", lambda: b"other") == (b"report", True)


def test_no_write_back_while_the_trial_fails() -> None:
    from ferry.cache.report_cache import ReportCache

    answer = threading.Event()
    backend = Slow(answer, up=False)
    breaker = CircuitBreaker("down", 1, 0.05, probe=backend.ping, trial_wait=0.001)
    cache = ReportCache(backend, "down", 60, breaker=breaker)
    breaker.failure()
    assert _until(lambda: breaker.state == "half_open")

    def compute() -> bytes:
        answer.set()
        assert _until(lambda: breaker.state == "open")  # the trial failed
        return b"report"

    assert cache.get_or_compute("student", "k", compute) == (b"report", False)
    assert backend.sets == 0
