"""`ferry report ...`: student, semester and bulk reports to files, and the report cache.

ferry report student ID [--semester S | --from D --to D] [--format pdf|csv|json] -o FILE
ferry report semester S [--format pdf|csv|json] -o FILE
ferry report bulk (--students-file F | --course CODE) --output zip|pdf|csv|json -o FILE
ferry report cache stats
ferry report cache clear [--student ID]
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from ferry.cli.common import clients, load_app, parse_duration, rpc_errors, school_option
from ferry.cli.export import save
from ferry.v1 import reports_pb2 as pb

FORMATS = click.Choice(["pdf", "csv", "json"])


@click.group()
def report() -> None:
    """Student and semester reports, and the report cache."""


def _save(responses: Iterable[Any], output: str) -> None:
    """The streamed file to OUTPUT (via a .part file, sha256 checked), or stdout for -."""
    if output == "-":
        for r in responses:
            click.echo(r.chunk.data, nl=False)  # bytes go to the binary stdout
        return
    target = Path(output)
    got = save(responses, target)
    click.echo(f"wrote {target} ({got.size:,} bytes; server named it {got.filename})", err=True)


# Every report command takes the language of the file it makes.
LANGUAGE = click.option(
    "--language",
    type=click.Choice(["en", "el"]),
    default="en",
    show_default=True,
    help="The language of the file's words and numbers (English or Greek).",
)


@report.command("student")
@click.argument("student_id")
@click.option("--semester", default="", help="Only this semester, e.g. 2026-fall.")
@click.option("--from", "date_from", default="", help="First day (YYYY-MM-DD).")
@click.option("--to", "date_to", default="", help="Last day (YYYY-MM-DD).")
@click.option("--format", "fmt", type=FORMATS, default="pdf", show_default=True)
@LANGUAGE
@click.option("-o", "--output", required=True, help="File to write ('-' for stdout).")
@click.option("--timeout", default="60s", show_default=True)
@school_option
@click.pass_context
def student(
    ctx: click.Context,
    student_id: str,
    semester: str,
    date_from: str,
    date_to: str,
    fmt: str,
    language: str,
    output: str,
    timeout: str,
) -> None:
    """One student's report as a file."""
    app = load_app(ctx)
    req = pb.RenderStudentReportRequest(
        report=pb.GetStudentReportRequest(
            student_id=student_id,
            semester=semester,
            date_from=date_from,
            date_to=date_to,
            language=language,
        ),
        format=fmt,
    )
    with rpc_errors():
        _save(
            clients(app).reports().RenderStudentReport(req, timeout=parse_duration(timeout)), output
        )


@report.command("semester")
@click.argument("semester")
@click.option("--format", "fmt", type=FORMATS, default="pdf", show_default=True)
@LANGUAGE
@click.option("-o", "--output", required=True, help="File to write ('-' for stdout).")
@click.option("--timeout", default="120s", show_default=True)
@school_option
@click.pass_context
def semester(
    ctx: click.Context, semester: str, fmt: str, language: str, output: str, timeout: str
) -> None:
    """A semester's report (courses, distribution, students at risk) as a file."""
    app = load_app(ctx)
    req = pb.RenderSemesterReportRequest(semester=semester, format=fmt, language=language)
    with rpc_errors():
        _save(
            clients(app).reports().RenderSemesterReport(req, timeout=parse_duration(timeout)),
            output,
        )


@report.command("bulk")
@click.option(
    "--students-file",
    type=click.File("r", encoding="utf-8"),
    help="Student ids, one a line (blank lines and # comments skipped); at most 50.",
)
@click.option("--course", default="", help="Every student enrolled in this course.")
@click.option(
    "--output",
    "output_kind",
    type=click.Choice(["zip", "pdf", "csv", "json"]),
    default="zip",
    show_default=True,
    help="zip of PDFs, one merged pdf, one csv, or a json summary.",
)
@click.option(
    "--semester",
    default="",
    help="Only this semester. Default: with --course, the course's semester; with "
    "--students-file, all data.",
)
@click.option("--from", "date_from", default="", help="First day (YYYY-MM-DD).")
@click.option("--to", "date_to", default="", help="Last day (YYYY-MM-DD).")
@LANGUAGE
@click.option("-o", "--out", "target", required=True, help="File to write ('-' for stdout).")
@click.option("--timeout", default="5m", show_default=True)
@school_option
@click.pass_context
def bulk(
    ctx: click.Context,
    students_file: Any,
    course: str,
    output_kind: str,
    semester: str,
    date_from: str,
    date_to: str,
    language: str,
    target: str,
    timeout: str,
) -> None:
    """Reports of many students in one file; students that fail are listed, not fatal."""
    if bool(students_file) == bool(course):
        raise click.UsageError("give exactly one of --students-file and --course")
    ids = []
    if students_file:
        ids = [
            line.strip()
            for line in students_file
            if line.strip() and not line.lstrip().startswith("#")
        ]
    app = load_app(ctx)
    req = pb.BulkStudentReportsRequest(
        student_ids=ids,
        course_code=course,
        output=output_kind,
        semester=semester,
        date_from=date_from,
        date_to=date_to,
        language=language,
    )
    with rpc_errors():
        _save(
            clients(app).reports().BulkStudentReports(req, timeout=parse_duration(timeout)), target
        )


@report.group("cache")
def cache() -> None:
    """The report cache: its stats, and clearing it."""


@cache.command("stats")
@school_option
@click.pass_context
def cache_stats(ctx: click.Context) -> None:
    """Hits, misses, errors and hit ratio of the serving process's cache."""
    app = load_app(ctx)
    with rpc_errors():
        s = clients(app).reports().GetCacheStats(pb.GetCacheStatsRequest(), timeout=10)
    entries = "unknown" if s.entries < 0 else f"{s.entries:,}"
    click.echo(
        f"backend {s.backend}  hits {s.hits:,}  misses {s.misses:,}  errors {s.errors:,}  "
        f"hit ratio {s.hit_ratio:.1%}  entries {entries}  breaker {s.breaker}"
    )


@cache.command("clear")
@click.option("--student", default="", help="Only this student's reports.")
@school_option
@click.pass_context
def cache_clear(ctx: click.Context, student: str) -> None:
    """Forget cached reports (O(1): a version bump, no key scan)."""
    app = load_app(ctx)
    with rpc_errors():
        r = (
            clients(app)
            .reports()
            .InvalidateCache(pb.InvalidateCacheRequest(student_id=student), timeout=10)
        )
    what = f"student {student}" if student else "all reports"
    click.echo(f"cleared {what} (version {r.version})")
