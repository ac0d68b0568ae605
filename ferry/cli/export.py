"""`ferry export …`: get data out, through the export service's gRPC API."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click

from ferry.cli.common import clients, load_app, parse_duration, rpc_errors, school_option, table
from ferry.rpc.files import ChunkError, Saved, write_chunks
from ferry.v1 import export_pb2


@click.group()
def export() -> None:
    """Get data out (talks gRPC to the export service)."""


@export.command("semesters")
@school_option
@click.pass_context
def export_semesters(ctx: click.Context) -> None:
    """List semesters with their course, student and enrollment counts."""
    app = load_app(ctx)
    with rpc_errors():
        resp = clients(app).export().ListSemesters(export_pb2.ListSemestersRequest())
    if not resp.semesters:
        click.echo("no semesters yet (try `ferry demo seed`)")
        return
    table(
        [[s.name, s.course_count, s.student_count, s.enrollment_count] for s in resp.semesters],
        ["semester", "courses", "students", "enrollments"],
    )


@export.command("session")
@click.option("--semester", default="", help="The semester to export, e.g. 2026-fall.")
@click.option(
    "--scope",
    type=click.Choice(["semester", "school"]),
    default="semester",
    show_default=True,
    help="school: everything of the school, soft-deleted records too (a school bundle, "
    "no --semester), which `ferry import FILE --school CODE` takes into a school of "
    "another installation.",
)
@click.option(
    "--format",
    "format_",
    default="json",
    show_default=True,
    help="Bundle format: json, jsonl, xlsx, tar.gz (or another installed one).",
)
@click.option("--include-deleted", is_flag=True, help="Include soft-deleted records.")
@click.option(
    "--updated-since",
    default=None,
    help="A delta bundle: only records changed or deleted since this ISO-8601 instant "
    "(UTC when it has no offset).",
)
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write."
)
@click.option(
    "--timeout", default="1h", show_default=True, help="Give up after this long (90s, 15m, 1h)."
)
@school_option
@click.pass_context
def export_session(
    ctx: click.Context,
    semester: str,
    scope: str,
    format_: str,
    include_deleted: bool,
    updated_since: str | None,
    output: str,
    timeout: str,
) -> None:
    """Download a semester bundle (or a school's, --scope school) to a file, verifying
    its sha256. The bundle names the school it is of."""
    if (scope == "semester") != bool(semester):
        raise click.UsageError("give --semester, or --scope school without --semester")
    app = load_app(ctx)
    request = export_pb2.DownloadSessionRequest(
        semester=semester,
        bundle_format=format_,
        include_deleted=include_deleted or scope == "school",
        scope="" if scope == "semester" else scope,
    )
    if updated_since:
        request.updated_since.FromDatetime(_instant(updated_since))
    target = Path(output)
    with rpc_errors():
        got = save(
            clients(app).export().DownloadSession(request, timeout=parse_duration(timeout)),
            target,
            Progress(),
        )
    click.echo(
        f"wrote {target} ({got.size:,} bytes, sha256 {got.sha256}; server named it {got.filename})"
    )


def _instant(text: str) -> dt.datetime:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO-8601 instant like 2026-09-01T00:00:00Z",
            param_hint="--updated-since",
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class Progress:
    """Bytes received so far on stderr, redrawn in place at most a few times a second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, received: int, done: bool = False) -> None:
        now = time.monotonic()
        if done or now - self.last >= 0.25:
            self.last = now
            end = "\n" if done else ""
            click.echo(f"\rreceived {received / 1048576:,.1f} MiB{end}", err=True, nl=False)


def download(
    responses: Iterable[Any], path: Path, progress: Callable[..., None] | None = None
) -> Saved:
    """The FileChunks of `responses` (each `.chunk`) written to `path` and checked
    (ferry.rpc.files.write_chunks); a mismatch is a one-line error and no file."""
    try:
        got = write_chunks((r.chunk for r in responses), path, progress)
    except ChunkError as e:
        raise click.ClickException(str(e)) from None
    if progress is not None:
        progress(got.size, done=True)
    return got


def save(
    responses: Iterable[Any], target: Path, progress: Callable[..., None] | None = None
) -> Saved:
    """`download` into `target.part`, renamed to `target` once it checks out."""
    part = target.with_name(target.name + ".part")
    got = download(responses, part, progress)
    part.replace(target)
    return got
