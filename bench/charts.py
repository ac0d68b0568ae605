"""A small SVG chart per path: records/s and peak RSS against size, Ferry beside its raw
baseline, so a reader sees at a glance where cost grows with the data.

Drawn with reportlab's graphics (already a Ferry dependency, for PDFs) into
bench/results/<path>.svg, next to latest.json. A path needs points at two sizes or more
(bench.common.point); a path measured at one size only gets no chart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from reportlab.graphics import renderSVG
from reportlab.graphics.charts.axes import LogXValueAxis
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors

from bench.common import POINTS, Point, Row

FERRY = colors.HexColor("#1f6feb")
BASELINE = colors.HexColor("#8b949e")
WIDTH, HEIGHT = 560, 220


def slug(path: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-")


def _plot(x: float, title: str, series: Sequence[tuple[str, list[tuple[float, float]], colors.Color]]) -> tuple[LinePlot, String]:  # noqa: E501
    plot = LinePlot()
    plot.x, plot.y, plot.width, plot.height = x, 50, 200, 130
    plot.xValueAxis = LogXValueAxis()
    plot.data = [pts for _, pts, _ in series]
    for i, (_, _, color) in enumerate(series):
        plot.lines[i].strokeColor = color
        plot.lines[i].strokeWidth = 1.5
        plot.lines[i].symbol = makeMarker("FilledCircle", size=4, fillColor=color)
    plot.xValueAxis.labels.fontSize = 7
    plot.xValueAxis.labelTextFormat = lambda v: f"{v / 1e6:g}M" if v >= 1e6 else f"{v / 1e3:g}k"
    plot.yValueAxis.labels.fontSize = 7
    plot.yValueAxis.valueMin = 0
    plot.yValueAxis.labelTextFormat = lambda v: f"{v / 1e3:g}k" if v >= 1e4 else f"{v:g}"
    label = String(x + 100, 190, title, fontSize=9, textAnchor="middle")
    return plot, label


def chart(path: str, points: list[Point]) -> Drawing:
    pts = sorted(points, key=lambda p: p.n)
    d = Drawing(WIDTH, HEIGHT)
    d.add(String(WIDTH / 2, HEIGHT - 14, path, fontSize=11, textAnchor="middle"))
    speed: list[tuple[str, list[tuple[float, float]], colors.Color]] = [
        ("Ferry", [(p.n, p.ferry_per_s) for p in pts], FERRY)
    ]
    if all(p.baseline_per_s for p in pts):
        speed.append(("raw baseline", [(p.n, p.baseline_per_s) for p in pts], BASELINE))
    memory: list[tuple[str, list[tuple[float, float]], colors.Color]] = []
    if all(p.rss_mb for p in pts):
        memory.append(("Ferry", [(p.n, p.rss_mb) for p in pts], FERRY))
    if memory and all(p.baseline_rss_mb for p in pts):
        memory.append(("raw baseline", [(p.n, p.baseline_rss_mb) for p in pts], BASELINE))
    for x, title, series in ((50, "records/s", speed), (320, "peak RSS, MB", memory)):
        if series:
            plot, label = _plot(x, title, series)
            d.add(plot)
            d.add(label)
    legend = Legend()
    legend.x, legend.y = 50, 18
    legend.alignment = "right"
    legend.columnMaximum = 1
    legend.fontSize = 8
    legend.colorNamePairs = [(c, name) for name, _, c in speed]
    d.add(legend)
    d.add(String(WIDTH / 2, 4, "records (log scale)", fontSize=7, textAnchor="middle"))
    return d


def write(rows: list[Row], folder: Path, points: list[Point] | None = None) -> list[Path]:
    """One SVG per path with points at two sizes or more; returns the files written."""
    by_path: dict[str, list[Point]] = {}
    for p in POINTS if points is None else points:
        by_path.setdefault(p.path, []).append(p)
    out = []
    folder.mkdir(parents=True, exist_ok=True)
    for path, pts in by_path.items():
        if len({p.n for p in pts}) < 2:
            continue
        target = folder / f"{slug(path)}.svg"
        renderSVG.drawToFile(chart(path, pts), str(target))
        out.append(target)
    return out
