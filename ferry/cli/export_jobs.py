"""`ferry export start|run|jobs|job|cancel|download|stats|cleanup`: entity export jobs,
through the export service's gRPC API.

`ferry export run --schedule NAME` is what a Kubernetes CronJob calls: it starts the
schedule's job, waits, and exits non-zero when the job did not complete. Each run is keyed
by schedule and the local date of its latest cron time (ferry/export_jobs/schedule.py, shared
with the in-process scheduler of `ferry serve`), so a CronJob retried the same day attaches
to that day's job (running or completed) instead of exporting twice; a job that failed or
was cancelled is run again under the next attempt's key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import grpc

from ferry.cli.common import clients, load_app, rpc_errors, school_named, school_option, table
from ferry.cli.export import export
from ferry.config import ScheduleSettings
from ferry.export_jobs import schedule
from ferry.rpc import statuses
from ferry.v1 import export_pb2 as pb
from ferry.v1 import export_pb2_grpc

STATUS = statuses.EXPORT_JOB_STATUS
BY_NAME = statuses.EXPORT_JOB_STATUS_VALUE
TERMINAL = {pb.EXPORT_JOB_STATUS_COMPLETED, pb.EXPORT_JOB_STATUS_FAILED}
TERMINAL.add(pb.EXPORT_JOB_STATUS_CANCELLED)
FILTERS = ("status", "search", "semester", "course_code", "date_from", "date_to")
WAIT_SECONDS = 24 * 3600.0


def _filters(pairs: tuple[str, ...] | dict[str, str]) -> pb.ExportFilters:
    items = pairs.items() if isinstance(pairs, dict) else [_pair(p) for p in pairs]
    out = pb.ExportFilters()
    for key, value in items:
        if key == "updated_since":
            try:
                out.updated_since.FromDatetime(_instant(value))
            except ValueError:
                raise click.BadParameter(
                    f"updated_since must be ISO-8601, got {value!r}", param_hint="--filter"
                ) from None
        elif key in FILTERS:
            setattr(out, key, value)
        else:
            raise click.BadParameter(
                f"unknown filter {key!r}; known: {', '.join((*FILTERS, 'updated_since'))}",
                param_hint="--filter",
            )
    return out


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--filter")
    return key.strip(), value


def _instant(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _stub(ctx: click.Context) -> export_pb2_grpc.ExportServiceStub:
    return clients(load_app(ctx)).export()


@export.command("start")
@click.option("--type", "export_type", required=True, help="students, courses, grades, …")
@click.option("--format", "fmt", default="csv", show_default=True, help="csv, xlsx, pdf, json.")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE", help="e.g. status=active")
@click.option("--field", "fields", multiple=True, help="Columns to export, in order.")
@click.option("--limit", type=int, default=0, help="At most this many rows.")
@click.option("--notify", multiple=True, help="Who to tell when the job ends.")
@click.option("--include-deleted", is_flag=True)
@click.option("--key", default="", help="Idempotency key: the same key returns the same job.")
@click.option(
    "--language",
    type=click.Choice(["en", "el"]),
    default=None,
    help="Headers as labels in this language (and its file name and mail); "
    "without it, field names.",
)
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@school_option
@click.pass_context
def export_start(
    ctx: click.Context,
    export_type: str,
    fmt: str,
    filters: tuple[str, ...],
    fields: tuple[str, ...],
    limit: int,
    notify: tuple[str, ...],
    include_deleted: bool,
    key: str,
    language: str | None,
    wait: bool,
    output: Path | None,
) -> None:
    """Start an entity export job (with -o: wait, then download and verify it)."""
    request = pb.StartExportRequest(
        export_type=export_type,
        format=fmt,
        filters=_filters(filters),
        fields=list(fields),
        limit=limit,
        notify=list(notify),
        include_deleted=include_deleted,
        idempotency_key=key,
        language=language or "",
    )
    stub = _stub(ctx)
    with rpc_errors():
        resp = stub.StartExport(request)
        job = resp.job
        click.echo(f"job {job.id} {'queued' if resp.created else 'exists'}", err=True)
        if wait or output is not None:
            job = _wait(stub, job)
            if job.status == pb.EXPORT_JOB_STATUS_COMPLETED and output is not None:
                _download(stub, job, output)
    if not (wait or output is not None):
        click.echo(job.id)
    _exit_for(job)


@export.command("run")
@click.option("--schedule", "name", required=True, help="A schedule in export.schedules.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Backup schedules: write (and keep the newest `keep`) here instead of the "
    "schedule's directory (a CronJob's volume).",
)
@school_option
@click.pass_context
def export_run(ctx: click.Context, name: str, output: Path | None, directory: Path | None) -> None:
    """Run a scheduled export (or backup) and wait for it; exits non-zero unless it
    completed."""
    app = load_app(ctx)
    schedules = app.settings.export.schedules
    if name not in schedules:
        known = ", ".join(sorted(schedules)) or "none (add them under export.schedules)"
        raise click.UsageError(f"unknown schedule {name!r}; known: {known}")
    s: ScheduleSettings = schedules[name]
    if directory is not None and s.kind != "backup":
        raise click.UsageError(f"--directory is for backup schedules; {name} is an export")
    codes = _schedule_schools(ctx, name, s)
    if s.kind == "backup":
        from ferry.cli.backup import run_backup_schedule

        if directory is not None:
            s = s.model_copy(update={"directory": str(directory)})
        if s.schools == "all" and not school_named():
            run_backup_schedule(app, name, s, output, every_school=True)
            return
        with _acting(ctx, codes[0]):
            run_backup_schedule(app, name, s, output)
        return
    failed = 0
    for code in codes:
        with _acting(ctx, code):
            failed += _run_one(ctx, name, s, code, _per_school(output, code, len(codes)))
    if failed:
        sys.exit(1)


def _schedule_schools(ctx: click.Context, name: str, s: ScheduleSettings) -> list[str]:
    """The schools the run goes through: the schedule's, or the one --school names."""
    from ferry.db import schools

    named = school_named()
    if s.school and named and named != s.school:
        raise click.UsageError(f"schedule {name} is of school {s.school}, not {named}")
    if named:
        return [named]
    return schedule.targets(
        s, lambda: [x.code for x in schools.all_schools(load_app(ctx).engine)]
    )


@contextmanager
def _acting(ctx: click.Context, code: str) -> Iterator[None]:
    """The calls made inside act for school `code` ("" the default): the CLI's token is
    signed for it (ferry.cli.common.clients)."""
    obj = ctx.find_root().ensure_object(dict)
    before = obj.get("school")
    obj["school"] = code or None
    try:
        yield
    finally:
        obj["school"] = before


def _per_school(output: Path | None, code: str, several: int) -> Path | None:
    """`output`, with the school's code before its suffix when several schools run."""
    if output is None or several <= 1:
        return output
    return output.with_name(f"{output.stem}.{code}{output.suffix}")


def _run_one(
    ctx: click.Context, name: str, s: ScheduleSettings, code: str, output: Path | None
) -> int:
    """Run schedule `name` for school `code`; 1 when its job did not complete."""
    stub = _stub(ctx)
    of = f" (school {code})" if code else ""
    with rpc_errors():
        try:
            job, created = schedule.start_run(stub, name, s, dt.datetime.now(dt.UTC))
        except ValueError as e:
            raise click.UsageError(f"schedule {name}: {e}") from None
        verb = "started" if created else "attached to"
        click.echo(f"schedule {name}{of}: {verb} job {job.id}", err=True)
        job = _wait(stub, job)
        if job.status == pb.EXPORT_JOB_STATUS_COMPLETED and output is not None:
            _download(stub, job, output)
    try:
        _exit_for(job)
    except SystemExit:
        return 1
    return 0


def _wait(stub: export_pb2_grpc.ExportServiceStub, job: pb.ExportJob) -> pb.ExportJob:
    """Watch the job, progress on stderr, until it ends; the final job."""
    while job.status not in TERMINAL:
        try:
            for update in stub.WatchExportJob(
                pb.WatchExportJobRequest(job_id=job.id), timeout=WAIT_SECONDS
            ):
                job = update.job
                _show(job)
        except grpc.RpcError as e:
            # A long wait may outlive one stream (deadline, a restarted replica): re-watch.
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
    click.echo("", err=True)
    return job


def _show(job: pb.ExportJob) -> None:
    done = job.progress_percent
    bar = "#" * (done // 4) + "-" * (25 - done // 4)
    click.echo(
        f"\r[{bar}] {done:3d}% {job.processed_records:,}/{job.total_records:,} "
        f"{STATUS.get(job.status, '?')}",
        err=True,
        nl=False,
    )


def _download(stub: export_pb2_grpc.ExportServiceStub, job: pb.ExportJob, path: Path) -> None:
    """Write the job's file to `path`, resuming after a dropped stream, checking sha256."""
    digest = hashlib.sha256()
    written = 0
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as f:
        for _attempt in range(5):
            try:
                for resp in stub.DownloadExport(
                    pb.DownloadExportRequest(job_id=job.id, offset=written), timeout=WAIT_SECONDS
                ):
                    f.write(resp.chunk.data)
                    digest.update(resp.chunk.data)
                    written += len(resp.chunk.data)
                break
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
    if digest.hexdigest() != job.sha256:
        tmp.unlink(missing_ok=True)
        raise click.ClickException(f"download of job {job.id} does not match its sha256")
    tmp.replace(path)
    click.echo(f"wrote {path} ({written:,} bytes, sha256 {job.sha256[:12]}…)", err=True)


def _exit_for(job: pb.ExportJob) -> None:
    if job.status in (pb.EXPORT_JOB_STATUS_FAILED, pb.EXPORT_JOB_STATUS_CANCELLED):
        reason = f": {job.error_message}" if job.error_message else ""
        click.echo(f"job {job.id} {STATUS[job.status]}{reason}", err=True)
        sys.exit(1)
    if job.status == pb.EXPORT_JOB_STATUS_COMPLETED:
        click.echo(
            f"job {job.id} completed: {job.total_records:,} records, "
            f"{job.file_size_bytes:,} bytes in {job.duration_seconds:.1f}s",
            err=True,
        )


@export.command("jobs")
@click.option("--status", type=click.Choice(list(BY_NAME)))
@click.option("--type", "export_type", default="")
@click.option("--limit", type=click.IntRange(1, 200), default=20, show_default=True)
@school_option
@click.pass_context
def export_jobs(ctx: click.Context, status: str | None, export_type: str, limit: int) -> None:
    """Recent export jobs, newest first."""
    with rpc_errors():
        resp = _stub(ctx).ListExportJobs(
            pb.ListExportJobsRequest(
                page_size=limit,
                status=BY_NAME.get(status or "", pb.EXPORT_JOB_STATUS_UNSPECIFIED),
                export_type=export_type,
            )
        )
    if not resp.jobs:
        click.echo("no export jobs")
        return
    table([_row(j) for j in resp.jobs], ["id", "type", "format", "status", "%", "records", "by"])
    if resp.total_size > len(resp.jobs):
        click.echo(f"({len(resp.jobs)} of {resp.total_size})")


def _row(j: pb.ExportJob) -> list[Any]:
    return [
        j.id,
        j.export_type,
        j.format,
        STATUS.get(j.status, "?"),
        j.progress_percent,
        f"{j.total_records:,}",
        j.requested_by,
    ]


@export.command("cancel")
@click.argument("job_id")
@school_option
@click.pass_context
def export_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a pending or running job."""
    with rpc_errors():
        job = _stub(ctx).CancelExportJob(pb.CancelExportJobRequest(job_id=job_id)).job
    click.echo(f"job {job.id} {STATUS.get(job.status, '?')}")


@export.command("download")
@click.argument("job_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@school_option
@click.pass_context
def export_download(ctx: click.Context, job_id: str, output: Path) -> None:
    """Download a completed job's file, verifying its sha256."""
    stub = _stub(ctx)
    with rpc_errors():
        job = stub.GetExportJob(pb.GetExportJobRequest(job_id=job_id)).job
        _download(stub, job, output)


@export.command("stats")
@click.option("--days", type=click.IntRange(0), default=30, show_default=True)
@click.option("--type", "export_type", default="")
@school_option
@click.pass_context
def export_stats(ctx: click.Context, days: int, export_type: str) -> None:
    """Outcomes, durations and throughput of recent export jobs."""
    with rpc_errors():
        s = _stub(ctx).GetExportStats(pb.GetExportStatsRequest(days=days, export_type=export_type))
    table(
        [
            ["jobs", s.total_jobs],
            ["succeeded", s.succeeded],
            ["failed", s.failed],
            ["cancelled", s.cancelled],
            ["success rate", f"{s.success_rate:.1%}"],
            ["average duration", f"{s.average_duration_seconds:.2f}s"],
            ["p95 duration", f"{s.p95_duration_seconds:.2f}s"],
            ["average records/s", f"{s.average_records_per_second:,.0f}"],
        ],
        ["stat", "value"],
    )


@export.command("cleanup")
@click.option("--older-than-days", type=click.IntRange(0), default=0, help="0: the retention.")
@click.option("--archive", is_flag=True, help="Move files to the archive instead of deleting.")
@click.option("--dry-run", is_flag=True, help="Count what would go; change nothing.")
@click.option(
    "--all-schools",
    is_flag=True,
    help="The platform's retention (the CronJob): every school in turn, on the database "
    "and the export storage directly, with export.retention_days.",
)
@school_option
@click.pass_context
def export_cleanup(
    ctx: click.Context, older_than_days: int, archive: bool, dry_run: bool, all_schools: bool
) -> None:
    """Remove export jobs that ended before the retention, with their files (of the
    school acted for; --all-schools: of every school)."""
    if all_schools:
        _cleanup_every_school(ctx, older_than_days, archive, dry_run)
        return
    with rpc_errors():
        r = _stub(ctx).CleanupExports(
            pb.CleanupExportsRequest(
                older_than_days=older_than_days, archive=archive, dry_run=dry_run
            )
        )
    prefix = "would remove" if dry_run else "removed"
    click.echo(
        f"{prefix} {r.jobs_removed} jobs: {r.files_deleted} files deleted, "
        f"{r.files_archived} archived, {r.bytes_freed:,} bytes freed"
    )


def _cleanup_every_school(
    ctx: click.Context, older_than_days: int, archive: bool, dry_run: bool
) -> None:
    from ferry.export_jobs.cleanup import cleanup_every_school
    from ferry.storage import Storage

    if older_than_days or school_named():
        raise click.UsageError(
            "--all-schools applies export.retention_days to every school: "
            "leave out --older-than-days and --school"
        )
    app = load_app(ctx)
    storage: Storage = app.storage()
    results = cleanup_every_school(
        app.engine, storage, app.settings.export.retention_days, archive, dry_run
    )
    prefix = "would remove" if dry_run else "removed"
    for code, r in results.items():
        click.echo(
            f"school {code}: {prefix} {r.jobs_removed} jobs: {r.files_deleted} files deleted, "
            f"{r.files_archived} archived, {r.bytes_freed:,} bytes freed"
        )
