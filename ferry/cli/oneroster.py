"""`ferry oneroster check FILE`: validate a OneRoster 1.2 CSV zip here, without a server.

Prints every refusal (file, row, column, rule), every warning, and what an import would
leave behind (the loss report); exits 1 when the package would be refused. The import
itself is `ferry import FILE --format oneroster`; the export is
`ferry export session --semester S --format oneroster -o roster.zip`.
"""

from __future__ import annotations

from pathlib import Path

import click

from ferry.errors import FerryError
from ferry.oneroster.importing import map_package
from ferry.oneroster.validate import read_package


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
