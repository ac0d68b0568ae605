"""The reports service's settings: `plugins.services.reports` in ferry.yaml."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from ferry.config import Strict


class Band(Strict):
    letter: str = Field(min_length=1, max_length=8)
    min_percent: float = Field(ge=0, le=100)
    points: float = Field(ge=0)


DEFAULT_SCALE = [
    Band(letter="A", min_percent=90, points=4.0),
    Band(letter="B", min_percent=80, points=3.0),
    Band(letter="C", min_percent=70, points=2.0),
    Band(letter="D", min_percent=60, points=1.0),
    Band(letter="F", min_percent=0, points=0.0),
]


class RiskSettings(Strict):
    min_percent: float = Field(60.0, ge=0, le=100)  # below: low_grade
    min_attendance_rate: float = Field(80.0, ge=0, le=100)  # below: low_attendance
    # A daily-performance slope below minus this (points per week) is a falling trend.
    falling_trend_per_week: float = Field(0.25, gt=0)
    # A trend needs marks in at least this many distinct weeks; fewer: not_enough_data,
    # never rising or falling and never a reason.
    min_trend_weeks: int = Field(3, ge=2)


class CacheUse(Strict):
    # A `ferry.caches` plugin (memory, redis); auto: redis when redis.url is set.
    backend: str = "auto"
    ttl_seconds: float = Field(900.0, gt=0)  # 15 minutes
    # Concurrent identical misses across replicas wait at most this long for the one
    # computing (then compute themselves); a lock is released after lock_timeout at most.
    lock_timeout_seconds: float = Field(10.0, gt=0)
    blocking_timeout_seconds: float = Field(2.0, ge=0)
    # A shared backend's (redis) entries are also kept in each process, up to this many
    # bytes (0: off), so a hot report costs no round trip. Never stale: every key carries
    # the data versions read from the database. Ignored for the memory backend.
    near_bytes: int = Field(16 * 1024 * 1024, ge=0)


class ReportSettings(Strict):
    grading_scale: list[Band] = DEFAULT_SCALE
    # A class average is shown only when at least this many students are graded.
    class_size: int = Field(5, ge=1)
    # Attendance statuses that count as attended for the rate.
    attended_statuses: list[str] = ["present", "late"]
    risk: RiskSettings = RiskSettings()
    cache: CacheUse = CacheUse()
    bulk_max_students: int = Field(50, ge=1, le=500)
    highlights_limit: int = Field(10, ge=0)  # top highlights in a semester report
    # Where a cache hit reads its data versions (ferry.reports.versions). auto: on
    # PostgreSQL, from memory kept fresh by notifications under a lease (a committed import
    # waits until every live process has seen it, at most one lease for a dead one), else
    # from the database; read: from the database on every hit.
    versions: Literal["auto", "read"] = "auto"
    versions_lease_seconds: float = Field(2.0, ge=0.2, le=60)

    @field_validator("grading_scale")
    @classmethod
    def _scale(cls, v: list[Band]) -> list[Band]:
        if not v:
            raise ValueError("the grading scale needs at least one band")
        ordered = sorted(v, key=lambda b: -b.min_percent)
        if ordered[-1].min_percent != 0:
            raise ValueError("the lowest band must start at 0")
        if len({b.min_percent for b in v}) != len(v):
            raise ValueError("two bands start at the same percentage")
        return ordered

    def band(self, percent: float) -> Band:
        for b in self.grading_scale:
            if percent >= b.min_percent:
                return b
        return self.grading_scale[-1]
