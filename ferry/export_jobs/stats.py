"""Export statistics from the job table: outcomes, durations and throughput."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ferry.db import tenant
from ferry.db.export_models import CANCELLED, COMPLETED, FAILED, ExportJob
from ferry.db.models import utcnow
from ferry.errors import InvalidArgument


@dataclass(frozen=True)
class ExportStats:
    total_jobs: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float
    average_duration_seconds: float
    p95_duration_seconds: float
    average_records_per_second: float
    slowest: list[ExportJob]


# Ten years: longer windows are mistakes, and would overflow date arithmetic.
MAX_DAYS = 3650


def export_stats(
    engine: Engine, days: int = 30, export_type: str = "", slowest: int = 5
) -> ExportStats:
    """Stats over jobs created in the last `days` days (optionally one export type).

    Durations and throughput are over completed jobs; p95 is the nearest-rank percentile;
    success rate is succeeded / (succeeded + failed), cancelled jobs counting for neither.
    """
    if not 0 <= days <= MAX_DAYS:
        raise InvalidArgument(f"days must be 0..{MAX_DAYS}, got {days}", field="days")
    if slowest < 0 or slowest > 100:
        raise InvalidArgument(f"slowest must be 0..100, got {slowest}", field="slowest")
    since = utcnow() - dt.timedelta(days=days or 30)
    # The application scope (the first wall): the acting school's jobs only.
    where = [ExportJob.created_at >= since, ExportJob.school_id == tenant.school_id()]
    if export_type:
        where.append(ExportJob.export_type == export_type)
    with Session(engine, expire_on_commit=False) as s:
        counts = dict(
            s.execute(
                sa.select(ExportJob.status, sa.func.count())
                .where(*where)
                .group_by(ExportJob.status)
            ).all()
        )
        done = [*where, ExportJob.status == COMPLETED]
        durations = sorted(
            float(d) for d in s.scalars(sa.select(ExportJob.duration_seconds).where(*done))
        )
        rate = s.execute(sa.select(sa.func.avg(ExportJob.records_per_second)).where(*done)).scalar()
        worst = list(
            s.scalars(
                sa.select(ExportJob)
                .where(*done)
                .order_by(ExportJob.duration_seconds.desc(), ExportJob.id)
                .limit(slowest or 5)
            )
        )
    ok, bad = int(counts.get(COMPLETED, 0)), int(counts.get(FAILED, 0))
    return ExportStats(
        total_jobs=int(sum(counts.values())),
        succeeded=ok,
        failed=bad,
        cancelled=int(counts.get(CANCELLED, 0)),
        success_rate=ok / (ok + bad) if ok + bad else 0.0,
        average_duration_seconds=sum(durations) / len(durations) if durations else 0.0,
        p95_duration_seconds=_percentile(durations, 0.95),
        average_records_per_second=float(rate or 0.0),
        slowest=worst,
    )


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
