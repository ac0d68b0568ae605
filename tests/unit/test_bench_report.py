"""What `make bench` prints and writes besides its table: each goal of the issue judged
met, missed or not measured on the run's rows, and an SVG chart per path measured at two
sizes or more (Ferry beside its raw baseline, records/s and peak RSS)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from bench import charts
from bench.common import Point, Row
from bench.goals import judge


def _verdict(rows: list[Row], start: str) -> bool | None:
    return next(v.met for v in judge(rows) if v.goal.startswith(start))


def test_goals_are_judged_on_the_figures_of_the_run() -> None:
    hit = Row("GetStudentReport cache hit (near cache, Redis behind), gRPC loopback", 300, 1, "",
              1, 0, "", {"hit_p50_ms": 0.50, "health_p50_ms": 0.45})  # fmt: skip
    slow = Row(hit.what, 300, 1, "", 1, 0, "", {"hit_p50_ms": 0.62, "health_p50_ms": 0.45})
    assert _verdict([hit], "report cache hit") is True
    assert _verdict([slow], "report cache hit") is False
    assert _verdict([], "report cache hit") is None  # left out with --only: not a miss
    listed = Row("ListSemesters with exact counts (1 semester(s)), gRPC loopback", 200, 800,
                 "", 2000, 0, "", {"p50_ms": 5.5})  # fmt: skip
    assert _verdict([listed], "ListSemesters") is False
    stream = Row("StreamSession via gRPC, semester 2026-fall", 10, 65, "", 100, 0)
    assert _verdict([stream], "StreamSession") is True


def test_the_scaling_goal_compares_the_ratio_to_the_same_size_baseline_at_10m_and_1m() -> None:
    """The machine's load moves absolute records/s between sizes: the 10M ratio to its own
    baseline is judged against the 1M one (>= 0.85 of it), and RSS may grow by 50 MB."""

    def row(n: int, rate: float, base: float, rss: float) -> Row:
        return Row(f"csv export at {n:,} attendance rows (scale, 1 run)", n, rate, "", base,
                   rss, "", {"size": n, "scale_rss_mb": rss})  # fmt: skip

    one = row(1_000_000, 100, 200, 90)  # ratio 0.50
    assert _verdict([one, row(10_000_000, 300, 600, 120)], "csv export") is True  # 3x faster
    assert _verdict([one, row(10_000_000, 45, 100, 120)], "csv export") is True  # ratio 0.45
    assert _verdict([one, row(10_000_000, 300, 800, 120)], "csv export") is False  # 0.375
    assert _verdict([one, row(10_000_000, 100, 200, 150)], "csv export") is False  # +60 MB
    # Another path measured at 10M: csv's own verdict is "not measured".
    stream = Row("StreamSession at 10,000,000 records (scale)", 10_000_000, 1, "", 2, 90, "",
                 {"size": 10_000_000, "scale_rss_mb": 90})  # fmt: skip
    assert _verdict([one, stream], "csv export") is None
    # Each path by the start of its rows' names, whatever follows it.
    def named(what: str, n: int, ratio: float) -> Row:
        return Row(what.format(n=n), n, ratio, "", 1, 90, "", {"size": n, "scale_rss_mb": 90})

    for path, what in (
        ("backup", "backup (DownloadSession scope all, json) at {n:,} records (scale, 1 run)"),
        ("ImportSession re-import unchanged",
         "ImportSession re-import unchanged at {n:,} records, vs the first (Ferry vs Ferry)"),
    ):  # fmt: skip
        found = [named(what, 1_000_000, 0.5), named(what, 8_000_000, 0.4)]
        assert _verdict(found, path + " at 10M") is False  # 0.8 of the 1M ratio
        assert _verdict(found, "ImportSession json at 10M") is None
    # Nothing reached the large scale: one "not measured" for the whole goal.
    assert _verdict([row(100_000, 100, 200, 90), one], "every streaming path") is None


def test_a_chart_per_path_with_two_sizes_or_more(tmp_path: Path) -> None:
    points = [
        Point("csv export", 100_000, 300_000, 400_000, 80, 60),
        Point("csv export", 1_000_000, 280_000, 390_000, 85, 61),
        Point("only one size", 1_000_000, 1, 1, 1, 1),
    ]
    written = charts.write([], tmp_path, points)
    assert written == [tmp_path / "csv-export.svg"]
    svg = ET.parse(written[0]).getroot()
    texts = {t.text for t in svg.iter() if t.tag.endswith("text") and t.text}
    assert {"csv export", "records/s", "peak RSS, MB", "Ferry", "raw baseline"} <= texts
    lines = [p for p in svg.iter() if p.tag.endswith("path") or p.tag.endswith("polyline")]
    assert len(lines) >= 3  # Ferry and baseline speed, Ferry memory (and baseline memory)
