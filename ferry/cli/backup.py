"""`ferry backup create|restore`: whole-database backups, over gRPC like the other verbs.

A backup is a bundle of scope "all" (every record of the dataset, those in no semester
too, soft-deleted ones included) in any bundle format. Restoring it is an import with
strategy replace of that whole bundle, in one transaction: every record comes back as it
was and whatever the database holds beyond it is soft-deleted (undo takes a restore back
like any import). `--dry-run` shows exactly that and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

import click

from ferry.app import App
from ferry.cli.common import (
    clients,
    load_app,
    parse_duration,
    rpc_errors,
    school_named,
    school_option,
)
from ferry.cli.export import Progress, download, save
from ferry.cli.imports import UPLOAD_TIMEOUT_SECONDS, _print_result, _requests_session
from ferry.config import ScheduleSettings
from ferry.v1 import export_pb2
from ferry.v1 import import_pb2 as ipb

BACKUP_TIMEOUT_SECONDS = 4 * 3600.0


@click.group()
def backup() -> None:
    """Whole-database backups: create one, restore one."""


@backup.command("create")
@click.option(
    "-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write."
)
@click.option(
    "--format",
    "format_",
    default="json",
    show_default=True,
    help="Bundle format: json, jsonl, xlsx, tar.gz or another installed one.",
)
@click.option("--dataset", default="", help="The dataset (default: school).")
@click.option(
    "--timeout", default="2h", show_default=True, help="Give up after this long (90s, 15m, 1h)."
)
@click.option(
    "--all-schools",
    is_flag=True,
    help="Every school: a tar.gz of one bundle per school, read on the database directly "
    "as the platform role (database.platform_url); never over RPC.",
)
@school_option
@click.pass_context
def backup_create(
    ctx: click.Context, output: str, format_: str, dataset: str, timeout: str, all_schools: bool
) -> None:
    """Write every record of the school (--school; with --all-schools, of every school)
    to a bundle file, verifying its sha256."""
    app = load_app(ctx)
    if all_schools:
        _create_all(app, Path(output), format_, dataset)
        return
    request = export_pb2.DownloadSessionRequest(
        scope="all", bundle_format=format_, include_deleted=True, dataset=dataset
    )
    target = Path(output)
    with rpc_errors():
        got = save(
            clients(app).export().DownloadSession(request, timeout=parse_duration(timeout)),
            target,
            Progress(),
        )
    click.echo(f"backup {target}: {got.size:,} bytes, sha256 {got.sha256}")


@backup.command("restore")
@click.argument(
    "path",
    metavar="FILE",
    required=False,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--from-import",
    "from_import",
    default="",
    help="Restore the backup that import ID took before it ran (backup_before).",
)
@click.option("--dry-run", is_flag=True, help="Show what the restore would do; change nothing.")
@click.option("--format", "fmt", default="", help="Bundle format (default: from the name).")
@click.option(
    "--all-schools",
    is_flag=True,
    help="FILE is a backup of every school (backup create --all-schools): restore each "
    "school (adding missing ones as the platform role), on the database directly.",
)
@school_option
@click.pass_context
def backup_restore(
    ctx: click.Context,
    path: Path | None,
    from_import: str,
    dry_run: bool,
    fmt: str,
    all_schools: bool,
) -> None:
    """Restore a backup FILE (or, with --from-import, the one an import took), in one
    transaction: records come back as they were, whatever else is soft-deleted."""
    if (path is None) == (not from_import):
        raise click.UsageError("give either FILE or --from-import ID")
    app = load_app(ctx)
    if all_schools:
        if path is None or school_named():
            raise click.UsageError("--all-schools takes FILE, and no --school")
        _restore_all(app, path, dry_run)
        return
    stub = clients(app).imports()
    with rpc_errors():
        if from_import:
            result = stub.RestoreBackup(
                ipb.RestoreBackupRequest(import_id=from_import, dry_run=dry_run),
                timeout=UPLOAD_TIMEOUT_SECONDS,
            ).result
        else:
            assert path is not None
            options = ipb.ImportOptions(
                strategy=ipb.MERGE_STRATEGY_REPLACE,
                dry_run=dry_run,
                filename=path.name,
                bundle_format=fmt,
                school=school_named(),
            )
            bar = click.progressbar(
                length=path.stat().st_size, label=f"uploading {path.name}", file=sys.stderr
            )
            with bar:
                result = stub.ImportSession(
                    _requests_session(options, path, bar), timeout=UPLOAD_TIMEOUT_SECONDS
                ).result
    _print_result(result)


def _create_all(app: App, target: Path, format_: str, dataset: str) -> None:
    """`backup create --all-schools`: platform work on the database directly."""
    from ferry.db.engine import make_engine
    from ferry.errors import FerryError
    from ferry.imports.allschools import write_all

    if school_named():
        raise click.UsageError("--all-schools takes every school: leave --school out")
    platform = make_engine(app.settings.platform_database_url())
    try:
        written = write_all(platform, app.dataset(dataset), format_, target, _who())
    except FerryError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(2 if e.code.name == "INVALID_ARGUMENT" else 1)
    finally:
        platform.dispose()
    for w in written:
        click.echo(f"school {w.code}: {w.size:,} bytes, sha256 {w.sha256}")
    click.echo(f"backup of {len(written)} schools: {target} ({target.stat().st_size:,} bytes)")


def _restore_all(app: App, source: Path, dry_run: bool) -> None:
    """`backup restore --all-schools FILE`: each school on the app role, acting for it."""
    from ferry.db.engine import make_engine
    from ferry.errors import FerryError
    from ferry.imports.allschools import restore_all
    from ferry.merge import Status

    platform = make_engine(app.settings.platform_database_url())
    try:
        restored = restore_all(app.engine, platform, app.dataset(), source, dry_run, _who())
    except FerryError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(2 if e.code.name == "INVALID_ARGUMENT" else 1)
    finally:
        platform.dispose()
    failed = 0
    for r in restored:
        if r.outcome is None:
            click.echo(f"school {r.code}: would be added with every record of its bundle")
            continue
        done = r.outcome.status in (Status.COMPLETED, Status.DRY_RUN)
        failed += not done
        counts = ", ".join(
            f"{s.entity} {s.created}+ {s.updated}~ {s.deleted}-" for s in r.outcome.summaries
        )
        added = " (added)" if r.created else ""
        click.echo(
            f"school {r.code}{added}: {r.outcome.status.value} import {r.outcome.id}: {counts}"
        )
        if not done:
            click.echo(f"  {r.outcome.error_message}", err=True)
    if failed:
        sys.exit(1)


def _who() -> str:
    import os

    return f"cli:{os.environ.get('USER', 'local')}"


def run_backup_schedule(
    app: App,
    name: str,
    schedule: ScheduleSettings,
    output: Path | None = None,
    every_school: bool = False,
) -> Path:
    """Run backup schedule `name`: write the school's whole data (`every_school`: every
    school's, as the platform role, one archive) to `directory` (or `output`) as
    `<name>--<UTC time>.<extension>`, then keep only the newest `keep` of the schedule's
    files there. Returns the file written."""
    request = export_pb2.DownloadSessionRequest(
        scope="all", bundle_format=schedule.bundle_format, include_deleted=True
    )
    folder = output.parent if output is not None else app.settings.path(schedule.directory)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")  # sorts by time
    part = folder / f".{name}--{stamp}.part"
    if every_school:
        _create_all(app, part, schedule.bundle_format, "")
        extension = "tar.gz"
        size = part.stat().st_size
        from ferry.imports.allschools import sha256_of

        got_sha = sha256_of(part)
    else:
        with rpc_errors():
            got = download(
                clients(app).export().DownloadSession(request, timeout=BACKUP_TIMEOUT_SECONDS),
                part,
                Progress(),
            )
        extension = got.filename.partition(".")[2] or schedule.bundle_format
        size, got_sha = got.size, got.sha256
    target = output if output is not None else folder / f"{name}--{stamp}.{extension}"
    part.replace(target)
    removed = 0
    if output is None:
        mine = sorted(p for p in folder.glob(f"{name}--*") if p.is_file())
        for old in mine[: max(0, len(mine) - schedule.keep)]:
            old.unlink()
            removed += 1
    click.echo(
        f"schedule {name}: backup {target} ({size:,} bytes, sha256 {got_sha}); "
        f"removed {removed} older backup(s), keeping {schedule.keep}"
    )
    return target
