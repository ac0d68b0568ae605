"""`ferry export …`: get data out, through the export service's gRPC API."""

from __future__ import annotations

import click

from ferry.cli.common import clients, load_app, rpc_errors, table
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
