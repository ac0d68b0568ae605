"""Pure arithmetic of reports, separate from the queries so it is tested by hand:
weighted percentages, letters, attendance rates, trends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ferry.reports.settings import ReportSettings

# Enrolment statuses shown as W: left out of the GPA, credits attempted and every
# average (the student's, the class's and the semester's).
WITHDRAWN = ("dropped", "withdrawn")
WITHDRAWN_LETTER = "W"


def r2(x: float) -> float:
    """Two decimals, the precision every report shows (and what makes PostgreSQL's and
    SQLite's float sums print the same)."""
    return round(x + 0.0, 2)


@dataclass(frozen=True)
class Mark:
    score: float
    max_score: float
    weight: float


def weighted_percent(marks: Iterable[Mark]) -> float | None:
    """Sum(score / max_score * weight) / sum(weight) * 100 over marks with a positive
    max_score and weight; None when no mark counts."""
    num = den = 0.0
    for m in marks:
        if m.max_score > 0 and m.weight > 0:
            num += m.score / m.max_score * m.weight
            den += m.weight
    return None if den == 0 else num / den * 100


def attendance_rate(counts: dict[str, int], attended: Sequence[str]) -> float:
    total = sum(counts.values())
    if total == 0:
        return 0.0
    return sum(n for s, n in counts.items() if s in attended) / total * 100


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def slope_per_week(points: Sequence[tuple[dt.date, float]]) -> float | None:
    """Least-squares slope of score against time, in points per week; None with fewer
    than two distinct days."""
    if len({d for d, _ in points}) < 2:
        return None
    origin = min(d for d, _ in points)
    xs = [(d - origin).days / 7 for d, _ in points]
    ys = [s for _, s in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx


NOT_ENOUGH_DATA = "not_enough_data"


def trend(points: Sequence[tuple[dt.date, float]], settings: ReportSettings) -> tuple[str, float]:
    """(label, slope per week) of daily-performance marks: not_enough_data (slope 0) when
    they fall in fewer than `risk.min_trend_weeks` distinct weeks (Monday to Sunday)."""
    if len({monday(d) for d, _ in points}) < settings.risk.min_trend_weeks:
        return NOT_ENOUGH_DATA, 0.0
    slope = slope_per_week(points)
    return trend_label(slope, settings), slope or 0.0


def trend_label(slope: float | None, settings: ReportSettings) -> str:
    if slope is None:
        return NOT_ENOUGH_DATA
    t = settings.risk.falling_trend_per_week
    if slope <= -t:
        return "falling"
    if slope >= t:
        return "rising"
    return "steady"


def weighted_mean(pairs: Iterable[tuple[float, float]]) -> float | None:
    """Mean of values weighted by (value, weight); weights all zero -> the plain mean."""
    items = list(pairs)
    if not items:
        return None
    den = sum(w for _, w in items)
    if den > 0:
        return sum(v * w for v, w in items) / den
    return sum(v for v, _ in items) / len(items)
