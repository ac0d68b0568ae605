"""`ferry export …`: get data out, through the export service's gRPC API."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ferry.cli.common import clients, load_app, parse_duration, rpc_errors, table
from ferry.v1 import export_pb2


@click.group()
def export() -> None:
    """Get data out (talks gRPC to the export service)."""


@export.command("semesters")
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
@click.option("--semester", required=True, help="The semester to export, e.g. 2026-fall.")
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
@click.pass_context
def export_session(
    ctx: click.Context,
    semester: str,
    format_: str,
    include_deleted: bool,
    updated_since: str | None,
    output: str,
    timeout: str,
) -> None:
    """Download a semester bundle to a file, verifying its sha256."""
    app = load_app(ctx)
    request = export_pb2.DownloadSessionRequest(
        semester=semester, bundle_format=format_, include_deleted=include_deleted
    )
    if updated_since:
        request.updated_since.FromDatetime(_instant(updated_since))
    target = Path(output)
    part = target.with_name(target.name + ".part")
    with rpc_errors():
        try:
            got = download(
                clients(app).export().DownloadSession(request, timeout=parse_duration(timeout)),
                part,
                Progress(),
            )
        except BaseException:
            part.unlink(missing_ok=True)  # never leave a partial file behind
            raise
    part.replace(target)
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


@dataclass
class Downloaded:
    filename: str
    size: int
    sha256: str


def download(responses: Iterable[Any], path: Path, progress: Callable[..., None]) -> Downloaded:
    """Write the FileChunks of `responses` to `path`; raises click.ClickException when the
    offsets or the final sha256 do not match what was received."""
    digest = hashlib.sha256()
    size = 0
    filename = ""
    sha = ""
    with path.open("wb") as f:
        for response in responses:
            chunk = response.chunk
            if chunk.offset != size:
                raise click.ClickException(
                    f"DATA_LOSS: chunk at offset {chunk.offset}, expected {size}"
                )
            filename = filename or chunk.filename
            f.write(chunk.data)
            digest.update(chunk.data)
            size += len(chunk.data)
            sha = chunk.sha256 or sha
            progress(size)
    progress(size, done=True)
    if not sha or sha != digest.hexdigest():
        raise click.ClickException(
            f"DATA_LOSS: the file's sha256 is {digest.hexdigest()}, the server sent {sha or 'none'}"
        )
    return Downloaded(filename, size, sha)
