"""Tabular writers (csv, xlsx, pdf) against bare library loops, and their memory at scale.

Both sides read the same SQL through a psycopg server-side cursor, so the ratio isolates
the writer: Ferry's format plugin (typing, neutralisation, styling, paging) against the
plainest loop over the same library. Peak RSS at two sizes (100k and 1M rows) is measured
in a fresh subprocess per size (VmHWM of that process alone).

python -m bench.formats rss|rss-raw FORMAT ROWS DSN OUT   (the child; prints JSON)
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import xlsxwriter  # type: ignore[import-untyped]
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from bench.common import Row, point, rate, vm_hwm_mb
from ferry import plugins
from ferry.datasets.spec import Kind
from ferry.tabular.base import Table, TableColumn
from ferry.tabular.pdf_fonts import font_pair

ROOT = Path(__file__).resolve().parents[1]
S, N, F, D, T = Kind.STR, Kind.INT, Kind.FLOAT, Kind.DATE, Kind.TIMESTAMP

STUDENTS_SQL = """
SELECT student_id, first_name, last_name, email, date_of_birth, year_level, status, updated_at
FROM students WHERE deleted_at IS NULL ORDER BY id"""
STUDENTS = [
    ("student_id", S),
    ("first_name", S),
    ("last_name", S),
    ("email", S),
    ("date_of_birth", D),
    ("year_level", N),
    ("status", S),
    ("updated_at", T),
]

GRADES_SQL = """
SELECT s.student_id, c.course_code, g.assessment, g.score, g.max_score, g.weight,
       g.graded_on, g.comment, g.updated_at
FROM grades g JOIN enrollments e ON e.id = g.enrollment_ref
JOIN students s ON s.id = e.student_ref JOIN courses c ON c.id = e.course_ref
WHERE g.deleted_at IS NULL ORDER BY g.id"""
GRADES = [
    ("student_id", S),
    ("course_code", S),
    ("assessment", S),
    ("score", F),
    ("max_score", F),
    ("weight", F),
    ("graded_on", D),
    ("comment", S),
    ("updated_at", T),
]

# 500k attendance rows twice over: enough rows to show whether memory grows with them.
ATTENDANCE_SQL = """
SELECT s.student_id, c.course_code, a.date, a.status, a.note, a.updated_at
FROM attendance a JOIN enrollments e ON e.id = a.enrollment_ref
JOIN students s ON s.id = e.student_ref JOIN courses c ON c.id = e.course_ref
CROSS JOIN generate_series(1, 2) AS copy"""
ATTENDANCE = [
    ("student_id", S),
    ("course_code", S),
    ("date", D),
    ("status", S),
    ("note", S),
    ("updated_at", T),
]


def table(title: str, cols: list[tuple[str, Kind]]) -> Table:
    return Table(title, [TableColumn(n, n.replace("_", " ").capitalize(), k) for n, k in cols])


@contextmanager
def cursor(dsn: str, sql: str, limit: int = 0) -> Iterator[Any]:
    """A psycopg server-side cursor over `sql` (optionally LIMITed), in a read-only tx."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        with conn.cursor(name="bench_formats") as cur:
            cur.itersize = 2000
            cur.execute(sql + (f" LIMIT {limit}" if limit else ""))
            yield cur


def ferry_export(
    fmt: str, dsn: str, jobs: list[tuple[str, str, list[Any], int]], out_dir: Path
) -> int:
    """Rows written by Ferry's `fmt` plugin for each (title, sql, columns, limit) job."""
    writer = plugins.load("ferry.formats", fmt)()
    n = 0
    for title, sql, cols, limit in jobs:
        with cursor(dsn, sql, limit) as cur, open(out_dir / f"ferry_{title}.{fmt}", "wb") as f:
            n += writer.write(f, table(title, cols), cur)
    return n


def raw_csv(dsn: str, jobs: list[tuple[str, str, list[Any], int]], out_dir: Path) -> int:
    n = 0
    for title, sql, cols, limit in jobs:
        with (
            cursor(dsn, sql, limit) as cur,
            open(out_dir / f"raw_{title}.csv", "w", newline="", encoding="utf-8") as f,
        ):
            w = csv.writer(f)
            w.writerow([c for c, _ in cols])
            for row in cur:
                w.writerow(row)
                n += 1
    return n


# Rows in a worksheet (the header is one): past it xlsxwriter drops rows without a word.
XLSX_MAX_ROWS = 1_048_576


def raw_xlsx(dsn: str, jobs: list[tuple[str, str, list[Any], int]], out_dir: Path) -> int:
    n = 0
    for title, sql, cols, limit in jobs:
        wb = xlsxwriter.Workbook(
            str(out_dir / f"raw_{title}.xlsx"), {"constant_memory": True, "remove_timezone": True}
        )
        header = [c for c, _ in cols]
        ws = wb.add_worksheet()
        ws.write_row(0, 0, header)
        with cursor(dsn, sql, limit) as cur:
            r = 0
            for row in cur:
                r += 1
                if r == XLSX_MAX_ROWS:  # a new sheet, as Ferry's writer does past the limit
                    ws = wb.add_worksheet()
                    ws.write_row(0, 0, header)
                    r = 1
                ws.write_row(r, 0, row)
                n += 1
        wb.close()
    return n


def raw_pdf(dsn: str, jobs: list[tuple[str, str, list[Any], int]], out_dir: Path) -> int:
    """A bare page-by-page table: a header line, then one drawString per cell."""
    font, bold = font_pair()
    width, height = A4[1], A4[0]
    n = 0
    for title, sql, cols, limit in jobs:
        c = Canvas(str(out_dir / f"raw_{title}.pdf"), pagesize=(width, height))
        col_w = (width - 72) / len(cols)
        per_page = int((height - 72) / 12) - 1
        with cursor(dsn, sql, limit) as cur:
            y = 0.0
            on_page = per_page
            for row in cur:
                if on_page == per_page:
                    if n:
                        c.showPage()
                    y = height - 36
                    c.setFont(bold, 8)
                    for j, (name, _) in enumerate(cols):
                        c.drawString(36 + j * col_w, y, name)
                    c.setFont(font, 8)
                    on_page = 0
                y -= 12
                for j, v in enumerate(row):
                    c.drawString(36 + j * col_w, y, "" if v is None else str(v)[:24])
                on_page += 1
                n += 1
        c.save()
    return n


# The bare library loops, by format, for the charts' baselines at each size.
RAW: dict[str, Callable[[str, list[Any], Path], int]] = {
    "csv": raw_csv,
    "xlsx": raw_xlsx,
    "pdf": raw_pdf,
}


def _speed(
    what: str,
    fmt: str,
    dsn: str,
    jobs: list[Any],
    workdir: Path,
    repeat: int,
    baseline: str,
    raw: Callable[[str, list[Any], Path], int],
) -> Row:
    n_raw, t_raw = rate(lambda: raw(dsn, jobs, workdir), repeat)
    n, t = rate(lambda: ferry_export(fmt, dsn, jobs, workdir), repeat)
    if n != n_raw:
        raise AssertionError(f"{fmt}: Ferry wrote {n} rows, the baseline {n_raw}")
    notes = [s for s in (t.spread_note(), t_raw.spread_note()) if s]
    return Row(what, n, t.median, baseline, t_raw.median, 0.0, "; ".join(notes))


def _child_rss(fmt: str, rows: int, dsn: str, workdir: Path, raw: bool = False) -> dict[str, float]:
    """Rows, seconds and peak RSS of one export of `rows` attendance rows in a fresh
    process: Ferry's writer, or (`raw`) the bare library loop."""
    out = workdir / f"rss_{fmt}_{rows}.{fmt}"
    mode = "rss-raw" if raw else "rss"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.formats", mode, fmt, str(rows), dsn, str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    out.unlink(missing_ok=True)
    result: dict[str, float] = json.loads(proc.stdout)
    return result


def rss_rows(dsn: str, workdir: Path, sizes: dict[str, tuple[int, int]]) -> list[Row]:
    rows = []
    for fmt, (n_small, n_big) in sizes.items():
        small = _child_rss(fmt, n_small, dsn, workdir)
        big = _child_rss(fmt, n_big, dsn, workdir)
        diff = big["rss_mb"] - small["rss_mb"]
        for size, measured in ((n_small, small), (n_big, big)):
            bare = _child_rss(fmt, size, dsn, workdir, raw=True) if fmt in RAW else {}
            point(
                f"{fmt} export (attendance rows)",
                int(measured["rows"]),
                measured["rows"] / measured["seconds"],
                bare["rows"] / bare["seconds"] if bare else 0.0,
                measured["rss_mb"],
                bare.get("rss_mb", 0.0),
            )
        rows.append(
            Row(
                f"{fmt} export peak RSS, {n_small:,} vs {n_big:,} attendance rows",
                int(big["rows"]),
                big["rows"] / big["seconds"],
                f"same writer at {n_small:,} rows",
                small["rows"] / small["seconds"],
                big["rss_mb"],
                f"RSS {small['rss_mb']:.0f} MB vs {big['rss_mb']:.0f} MB, "
                f"diff {diff:+.0f} MB (goal < 50)",
                {"rss_growth_mb": diff, "rows_big": big["rows"], "rows_small": small["rows"]},
            )
        )
    return rows


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """csv/xlsx/pdf writer speed against bare loops, then peak RSS at 100k vs 1M rows."""
    csv_jobs = [("students", STUDENTS_SQL, STUDENTS, 0), ("grades", GRADES_SQL, GRADES, 0)]
    xlsx_jobs = [("grades", GRADES_SQL, GRADES, 100_000)]
    pdf_jobs = [("grades", GRADES_SQL, GRADES, 50_000)]
    return [
        _speed(
            "csv export, all students + grades",
            "csv",
            dsn,
            csv_jobs,
            workdir,
            repeat,
            "server-side cursor -> csv.writer to a file",
            raw_csv,
        ),
        _speed(
            "xlsx export, 100k grades",
            "xlsx",
            dsn,
            xlsx_jobs,
            workdir,
            repeat,
            "bare xlsxwriter constant_memory write_row loop",
            raw_xlsx,
        ),
        _speed(
            "pdf export, 50k grades",
            "pdf",
            dsn,
            pdf_jobs,
            workdir,
            repeat,
            "bare reportlab canvas, drawString per cell, page by page",
            raw_pdf,
        ),
        # pdf streams its pages to disk as it makes them, so it goes to 1M rows too.
        *rss_rows(
            dsn,
            workdir,
            {
                "csv": (100_000, 1_000_000),
                "xlsx": (100_000, 1_000_000),
                "json": (100_000, 1_000_000),
                "pdf": (100_000, 1_000_000),
            },
        ),
    ]


def _rss_child(fmt: str, rows: int, dsn: str, out: str) -> None:
    t = time.perf_counter()
    n = ferry_export_one(fmt, dsn, rows, Path(out))
    seconds = time.perf_counter() - t
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (bigger) parent.
    rss_mb = vm_hwm_mb(os.getpid())
    sys.stdout.write(json.dumps({"rows": n, "seconds": seconds, "rss_mb": rss_mb}))


def _raw_rss_child(fmt: str, rows: int, dsn: str, out: str) -> None:
    t = time.perf_counter()
    n = RAW[fmt](dsn, [("attendance", ATTENDANCE_SQL, ATTENDANCE, rows)], Path(out).parent)
    seconds = time.perf_counter() - t
    sys.stdout.write(json.dumps({"rows": n, "seconds": seconds, "rss_mb": vm_hwm_mb(os.getpid())}))


def ferry_export_one(fmt: str, dsn: str, rows: int, out: Path) -> int:
    writer = plugins.load("ferry.formats", fmt)()
    with cursor(dsn, ATTENDANCE_SQL, rows) as cur, open(out, "wb") as f:
        n: int = writer.write(f, table("attendance", ATTENDANCE), cur)
    return n


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "rss":
        _rss_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    elif len(sys.argv) == 6 and sys.argv[1] == "rss-raw":
        _raw_rss_child(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        raise SystemExit(__doc__)
