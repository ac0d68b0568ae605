"""The issue's goals, judged on the rows of one run: each prints met, MISSED, or not
measured (its benchmark was left out with --only, or a large run stopped before the size),
with the figure it was judged on.

The scaling goal (10M against 1M, `python -m bench --scale large`) is judged per path, and
its "records/s within 15%" on the ratio to the raw baseline measured beside each size, not
on absolute records/s: see `scaling`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.common import Row


@dataclass(frozen=True)
class Verdict:
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


def _find(rows: list[Row], start: str) -> Row | None:
    return next((r for r in rows if r.what.startswith(start)), None)


def _ratio(goal: str, start: str, floor: float) -> Callable[[list[Row]], Verdict]:
    def judge(rows: list[Row]) -> Verdict:
        r = _find(rows, start)
        if r is None or not r.baseline_per_s:
            return Verdict(goal, "-", None)
        return Verdict(goal, f"{r.ratio:.2f} ({r.what})", r.ratio >= floor)

    return judge


def _list_semesters(rows: list[Row]) -> Verdict:
    goal = "ListSemesters with counts <= 5 ms p50, exact"
    r = _find(rows, "ListSemesters with exact counts")
    if r is None:
        return Verdict(goal, "-", None)
    p50 = r.metrics["p50_ms"]
    return Verdict(goal, f"{p50:.2f} ms p50", p50 <= 5.0)


def _pdf(rows: list[Row]) -> Verdict:
    goal = (
        "entity PDF export: 1,000,000 rows, +<= 30 MB RSS from 100k to 1M, "
        ">= 1.0 of bare reportlab"
    )
    size = _find(rows, "pdf export peak RSS")
    speed = _find(rows, "pdf export,")
    if size is None or speed is None:
        return Verdict(goal, "-", None)
    growth = size.metrics.get("rss_growth_mb", float("inf"))
    rows_big = size.metrics.get("rows_big", 0)
    met = rows_big >= 1_000_000 and growth <= 30 and speed.ratio >= 1.0
    return Verdict(
        goal, f"{rows_big:,.0f} rows, {growth:+.0f} MB, speed {speed.ratio:.2f} of bare", met
    )


def _report_hit(rows: list[Row]) -> Verdict:
    goal = "report cache hit <= 1.25x the same server's health Check p50"
    r = _find(rows, "GetStudentReport cache hit (near cache")
    if r is None:
        return Verdict(goal, "-", None)
    x = r.metrics["hit_p50_ms"] / r.metrics["health_p50_ms"]
    return Verdict(
        goal,
        f"{x:.2f}x ({r.metrics['hit_p50_ms']:.2f} vs {r.metrics['health_p50_ms']:.2f} ms)",
        x <= 1.25,
    )


def _report_miss(rows: list[Row]) -> Verdict:
    goal = "report cache miss on the bench dataset <= 50 ms p50"
    r = _find(rows, "GetStudentReport miss (computed)")
    if r is None or "miss_p50_ms" not in r.metrics:
        return Verdict(goal, "-", None)
    p50, bare = r.metrics["miss_p50_ms"], r.metrics["inproc_p50_ms"]
    return Verdict(goal, f"{p50:.1f} ms p50 (computed in-process {bare:.1f} ms)", p50 <= 50.0)


def _gateway(rows: list[Row]) -> Verdict:
    goal = "gateway, cached report, 4 clients: >= 1,000 req/s, <= 1 ms overhead"
    r = _find(rows, "gateway POST /api/v1/reports/student-performance (cached), 4 clients")
    if r is None:
        return Verdict(goal, "-", None)
    over = r.metrics["overhead_p50_ms"]
    return Verdict(
        goal,
        f"{r.ferry_per_s:,.0f} req/s, {over:.2f} ms overhead",
        r.ferry_per_s >= 1000 and over <= 1.0,
    )


def _notify(rows: list[Row]) -> Verdict:
    goal = "notify Send burst, relay waiting 20 ms per mail: >= 250/s, 2 replicas >= 1.7x one"
    r = _find(rows, "2 notify replicas vs 1, relay accepting each mail after 20 ms")
    if r is None:
        return Verdict(goal, "-", None)
    return Verdict(
        goal,
        f"1 replica {r.baseline_per_s:,.0f}/s, 2 replicas {r.ferry_per_s:,.0f}/s "
        f"({r.ratio:.2f}x)",
        r.baseline_per_s >= 250 and r.ratio >= 1.7,
    )


# The paths the scaling goal names, as their rows of bench/scale.py begin (those
# rows carry the metrics size and scale_rss_mb).
SCALING_PATHS = (
    "ImportSession json",
    "ImportSession re-import unchanged",
    "backup",
    "restore",
    "StreamSession",
    "DownloadSession json",
    "csv export",
    "xlsx export",
)


def scaling(rows: list[Row], path: str) -> Verdict:
    """`path` at ~10M against ~1M (python -m bench --scale large).

    Records/s: the machine's load moves absolute records/s by 2-4x between sizes measured
    minutes apart (the raw read itself went from 24k to 219k/s in one run), so "within
    15%" is judged on the ratio to the raw baseline measured beside it at the same size:
    the ratio at 10M must be at least 0.85 of the ratio at 1M. (The re-import's baseline
    is the first import of the same size.) The absolute records/s are printed too.
    Peak RSS (the process doing Ferry's work, fresh per size): at most +50 MB from 1M to
    10M."""
    goal = (
        f"{path} at 10M vs 1M: ratio to its same-size baseline >= 0.85 of the 1M one, "
        "peak RSS +<= 50 MB"
    )
    sizes = {
        int(r.metrics["size"]): r
        for r in rows
        if "scale_rss_mb" in r.metrics and r.what.startswith(path + " ")
    }
    top = max(sizes, default=0)
    mid = max((n for n in sizes if 900_000 <= n <= top / 4), default=0)
    if top < 5_000_000 or not mid:
        return Verdict(goal, "-", None)
    a, b = sizes[mid], sizes[top]
    low, high = a.metrics["scale_rss_mb"], b.metrics["scale_rss_mb"]
    grow = high - low
    rss = f"peak RSS {low:.0f} -> {high:.0f} MB ({grow:+.0f})"
    speed = f"absolute {a.ferry_per_s:,.0f} -> {b.ferry_per_s:,.0f}/s"
    if not (a.ratio and b.ratio):
        return Verdict(goal, f"no baseline; {speed}; {rss}", None)
    kept = b.ratio / a.ratio
    measured = (
        f"ratio {a.ratio:.2f} at {mid:,} -> {b.ratio:.2f} at {top:,} ({kept:.2f} of it); "
        f"{speed} (baseline {a.baseline_per_s:,.0f} -> {b.baseline_per_s:,.0f}/s); {rss}"
    )
    return Verdict(goal, measured, kept >= 0.85 and grow <= 50)


def _scaling(rows: list[Row]) -> list[Verdict]:
    """One verdict per path when any row reached the large scale, else one "not measured"."""
    large = any(r.metrics.get("size", 0) >= 5_000_000 for r in rows if "scale_rss_mb" in r.metrics)
    if not large:
        goal = (
            "every streaming path at 10M: records/s (as a ratio to its same-size baseline) "
            "within 15% of 1M, peak RSS within +50 MB (python -m bench --scale large)"
        )
        return [Verdict(goal, "-", None)]
    return [scaling(rows, p) for p in SCALING_PATHS]


def _tenants(rows: list[Row]) -> Verdict:
    goal = "10 schools, RLS on within 10% of off: import, stream, report miss (issue 26)"
    found = [r for r in rows if r.what.startswith("tenants: ")]
    if not found:
        return Verdict(goal, "-", None)
    ratios = {r.what.split(",")[0][len("tenants: "):]: r.metrics["on_off"] for r in found}
    odd = [r.what.split(",")[0][len("tenants: "):] for r in found if "not_comparable" in r.metrics]
    measured = "; ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
    if odd:  # one side sent more rows than the other: no ratio to judge
        measured += f" ({', '.join(odd)}: not comparable, see its row)"
    return Verdict(goal, measured, not odd and len(ratios) == 3 and max(ratios.values()) <= 1.10)


GOALS: list[Callable[[list[Row]], Verdict]] = [
    _ratio(
        "ImportSession json into PostgreSQL >= 0.85 of COPY binary",
        "ImportSession json bundle into an empty db",
        0.85,
    ),
    _ratio("StreamSession >= 0.65 of a server-side cursor read", "StreamSession via gRPC", 0.65),
    _ratio(
        "DownloadSession json >= 0.75 of the raw read",
        "DownloadSession json bundle via gRPC",
        0.75,
    ),
    _ratio("DownloadSession jsonl >= 0.75 of the raw read", "DownloadSession jsonl bundle", 0.75),
    _ratio(
        "DownloadSession tar.gz >= 0.75 of the raw read", "DownloadSession tar.gz bundle", 0.75
    ),
    _list_semesters,
    _pdf,
    _report_hit,
    _report_miss,
    _gateway,
    _notify,
    _tenants,
]


def judge(rows: list[Row]) -> list[Verdict]:
    """Every goal; the scaling goal as one verdict per path (see `scaling`)."""
    return [g(rows) for g in GOALS] + _scaling(rows)


def print_goals(verdicts: list[Verdict], when: str = "") -> None:
    print(f"\n## Goals (issue 27){' ' + when if when else ''}")
    print("| goal | measured | verdict |")
    print("|---|---|---|")
    for v in verdicts:
        word = {True: "met", False: "MISSED", None: "not measured"}[v.met]
        print(f"| {v.goal} | {v.measured} | {word} |")
