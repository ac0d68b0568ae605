"""`ferry oneroster ...`: OneRoster 1.2 CSV packages (docs/oneroster.md).

ferry oneroster export --semester S [--updated-since T] -o roster.zip
    the semester as a OneRoster zip, and what did not cross (the export's loss report)
ferry oneroster check FILE
    validate a zip here, without a server: every refusal (file, row, column, rule), every
    warning, and what an import would leave behind; exit 1 when it would be refused

The import is `ferry import FILE --format oneroster` (its result lists the loss report);
`ferry export session --format oneroster` writes the same zip without the loss report.
"""

from __future__ import annotations

from pathlib import Path

import click

from ferry.bundle.formats.base import BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.cli.common import clients, load_app, parse_duration, rpc_errors, school_option
from ferry.cli.export import _instant, download
from ferry.errors import FerryError
from ferry.oneroster.export import build, write_zip
from ferry.oneroster.importing import map_package
from ferry.oneroster.validate import read_package
from ferry.v1 import export_pb2


@click.group()
def oneroster() -> None:
    """OneRoster 1.2 CSV packages (docs/oneroster.md)."""


@oneroster.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check(file: Path) -> None:
    """Validate FILE against the OneRoster 1.2 CSV binding; list refusals, warnings and
    what would not cross into Ferry. Exit status 1 when an import would refuse it (with
    --on-error skip_invalid, an import of a package whose problems are all rows takes the
    rest)."""
    try:
        with file.open("rb") as f:
            pkg = read_package(f)
    except FerryError as e:
        click.echo(f"refused: {e.message}", err=True)
        raise SystemExit(1) from None
    for p in pkg.errors:
        click.echo(f"error: {p} [{p.rule}]")
    for p in pkg.warnings:
        click.echo(f"warning: {p} [{p.rule}]")
    if any(p.row < 2 for p in pkg.errors):
        click.echo(f"refused: {len(pkg.errors)} problem(s); an import would change nothing")
        raise SystemExit(1)
    if pkg.errors:
        click.echo(
            f"refused: {len(pkg.errors)} row(s); an import would change nothing "
            "(with --on-error skip_invalid it would import the rest)"
        )
        raise SystemExit(1)
    mapped = map_package(pkg)
    counts = ", ".join(f"{len(v)} {k}" for k, v in mapped.records.items())
    click.echo(f"valid: would import {counts or 'nothing'}")
    for loss in mapped.loss.items():
        click.echo(f"not imported: {loss}")


@oneroster.command("export")
@click.option("--semester", required=True, help="The semester to export, e.g. 2026-fall.")
@click.option(
    "--updated-since",
    default=None,
    help="A delta: only records changed or deleted since this ISO-8601 instant.",
)
@click.option("--include-deleted", is_flag=True, help="Soft-deleted records as tobedeleted.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--timeout", default="1h", show_default=True, help="Give up after this long.")
@school_option
@click.pass_context
def export(
    ctx: click.Context,
    semester: str,
    updated_since: str | None,
    include_deleted: bool,
    output: Path,
    timeout: str,
) -> None:
    """Write SEMESTER as a OneRoster 1.2 CSV zip and say what did not cross.

    The semester's whole bundle comes from the export service (DownloadSession, json,
    sha256 checked), so the loss report counts what OneRoster has no place for
    (attendance, daily performance, highlights, Ferry-only fields)."""
    app = load_app(ctx)
    request = export_pb2.DownloadSessionRequest(
        semester=semester, bundle_format="json", include_deleted=include_deleted
    )
    if updated_since:
        request.updated_since.FromDatetime(_instant(updated_since))
    part = output.with_name(output.name + ".part")
    bundle = output.with_name(output.name + ".bundle.part")
    try:
        with rpc_errors():
            download(
                clients(app).export().DownloadSession(request, timeout=parse_duration(timeout)),
                bundle,
                lambda *a, **k: None,
            )
        with bundle.open("rb") as src, part.open("wb") as out:
            tables, manifest, loss = build(JsonBundle().read(src, BundleLimits()))
            write_zip(tables, manifest, out)
        part.replace(output)
    except FerryError as e:
        raise click.ClickException(e.message) from None
    finally:
        bundle.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    rows = sum(len(r) for r in tables.rows.values())
    click.echo(f"wrote {output} ({output.stat().st_size:,} bytes, {rows:,} OneRoster rows)")
    for x in loss.items():
        click.echo(f"not exported: {x}")
