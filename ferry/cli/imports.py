"""`ferry import …`: merge data in, through the import service's gRPC API.

`ferry import FILE [options]` uploads a bundle (or, with --entity, a csv/xlsx file of
one entity); `ferry import list|show|undo|rejected` work with recorded imports. A first
argument that is not a subcommand is taken as FILE (a file called "list" is ./list).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import click

from ferry.cli.common import clients, load_app, rpc_errors, school_named, school_option, table
from ferry.imports.tabular import EMPTY_CELL_RULE
from ferry.rpc.files import blocks, file_chunks
from ferry.v1 import bundle_pb2 as bpb
from ferry.v1 import import_pb2 as ipb

# A whole semester may take a while to upload and merge.
UPLOAD_TIMEOUT_SECONDS = 3600.0
STRATEGIES = {
    "update": ipb.MERGE_STRATEGY_UPDATE,
    "skip": ipb.MERGE_STRATEGY_SKIP,
    "update_only": ipb.MERGE_STRATEGY_UPDATE_ONLY,
    "replace": ipb.MERGE_STRATEGY_REPLACE,
}
ON_ERROR = {"abort": ipb.ON_ERROR_ABORT, "skip_invalid": ipb.ON_ERROR_SKIP_INVALID}
ERRORS_SHOWN = 10


class _ImportGroup(click.Group):
    """A group whose unknown first argument is the FILE of the hidden `file` command."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["file", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ImportGroup)
def imports() -> None:
    """Merge data in (talks gRPC to the import service).

    \b
    ferry import FILE [--strategy update|skip|update_only|replace] [--dry-run]
                      [--on-error abort|skip_invalid] [--idempotency-key KEY]
                      [--format FORMAT] [--entity ENTITY [--map HEADER=FIELD ...]]
    ferry import list | show ID | undo ID [--force] | rejected ID -o FILE
    ferry import rename students|courses OLD_KEY NEW_KEY [--dry-run]

    `ferry import FILE --help` explains the upload options.
    """


# The empty-cell rule of csv/xlsx entity files, said by --help and after each such import.
_ENTITY_HELP = (
    "Import a csv/xlsx file of this entity instead. Only its columns are written; "
    + EMPTY_CELL_RULE
    + "."
)


def _echo_empty_cell_rule(r: ipb.ImportResult) -> None:
    """After a csv/xlsx entity import: how its empty cells were read."""
    if r.entity and r.options.bundle_format in ("csv", "xlsx"):
        click.echo(f"empty cells: {EMPTY_CELL_RULE}")


def _chunks(path: Path, progress: Any) -> Iterator[bpb.FileChunk]:
    """The file in 1 MiB chunks: filename on the first, sha256 on the last."""
    with path.open("rb") as f:
        for chunk in file_chunks(blocks(f), path.name):
            progress.update(len(chunk.data))
            yield chunk


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        header, sep, name = pair.partition("=")
        if not sep or not header or not name:
            raise click.BadParameter(f"{pair!r} is not HEADER=FIELD", param_hint="--map")
        out[header] = name
    return out


@imports.command("file", hidden=True)
@click.argument(
    "path", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--strategy", type=click.Choice(list(STRATEGIES)), default="update", show_default=True
)
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option("--on-error", type=click.Choice(list(ON_ERROR)), default="abort", show_default=True)
@click.option("--idempotency-key", default="", help="Same key and file: the first result.")
@click.option("--format", "fmt", default="", help="Bundle format (default: from the name).")
@click.option("--entity", default="", help=_ENTITY_HELP)
@click.option("--map", "maps", multiple=True, help="HEADER=FIELD column mapping (--entity).")
@click.option(
    "--plan-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --dry-run: write the plan here: a header line (digest, counts, samples, "
    "limits), every record's decision (one JSON line each), an end line.",
)
@click.option(
    "--plan",
    "plan_in",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Apply exactly the plan a --dry-run --plan-out wrote, or nothing.",
)
@click.option(
    "--allow-mass-change", is_flag=True, help="Exceed the server's change limits (admins)."
)
@click.option(
    "--create-school",
    is_flag=True,
    help="With --school: add that school first when this installation lacks it (on the "
    "database, as the platform role; PostgreSQL).",
)
@school_option
@click.pass_context
def import_file(
    ctx: click.Context,
    path: Path,
    strategy: str,
    dry_run: bool,
    on_error: str,
    idempotency_key: str,
    fmt: str,
    entity: str,
    maps: tuple[str, ...],
    plan_out: Path | None,
    plan_in: Path | None,
    allow_mass_change: bool,
    create_school: bool,
) -> None:
    """Upload FILE and merge it, printing a summary per entity.

    A school's bundle goes into the school --school names (--create-school adds it
    first); without --school into an installation of several schools it is refused,
    naming the schools (exit 2), unless it is of the school the call acts for.

    \b
    Review first, then apply exactly what was reviewed:
      ferry import FILE --dry-run --plan-out plan.json
      ferry import FILE --plan plan.json
    The import is refused (FAILED_PRECONDITION, naming what changed) if the data
    changed since the preview; nothing is written then.
    """
    plan_digest, strategy, on_error = _plan_options(plan_in, plan_out, dry_run, strategy, on_error)
    app = load_app(ctx)
    if create_school:
        _create_school(app)
    stub = clients(app).imports()
    bar = click.progressbar(
        length=path.stat().st_size,
        label=f"uploading {path.name}",
        file=sys.stderr,
    )
    with rpc_errors(), bar:
        if entity:
            options = ipb.ImportEntitiesOptions(
                entity=entity,
                format=fmt,
                column_mapping=_mapping(maps),
                strategy=STRATEGIES[strategy],
                dry_run=dry_run,
                on_error=ON_ERROR[on_error],
                idempotency_key=idempotency_key,
                filename=path.name,
                plan_digest=plan_digest,
                allow_mass_change=allow_mass_change,
                plan_records=plan_out is not None,
            )
            result = stub.ImportEntities(
                _requests_entities(options, path, bar), timeout=UPLOAD_TIMEOUT_SECONDS
            ).result
        else:
            session = ipb.ImportOptions(
                strategy=STRATEGIES[strategy],
                dry_run=dry_run,
                on_error=ON_ERROR[on_error],
                idempotency_key=idempotency_key,
                filename=path.name,
                bundle_format=fmt,
                plan_digest=plan_digest,
                allow_mass_change=allow_mass_change,
                plan_records=plan_out is not None,
                school=school_named(),
            )
            result = stub.ImportSession(
                _requests_session(session, path, bar), timeout=UPLOAD_TIMEOUT_SECONDS
            ).result
    _print_result(result)
    if plan_out is not None:
        _write_plan(plan_out, path, result, stub)


def _create_school(app: Any) -> None:
    """--create-school: add the --school named unless it exists (platform work)."""
    from ferry.db import schools
    from ferry.db.engine import make_engine
    from ferry.errors import AlreadyExists, FerryError

    code = school_named()
    if not code:
        raise click.UsageError("--create-school needs --school CODE")
    engine = make_engine(app.settings.platform_database_url())
    try:
        schools.add(engine, code)
        click.echo(f"school {code} added", err=True)
    except AlreadyExists:
        pass
    except FerryError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(2)
    finally:
        engine.dispose()


# --- plans (issue 29): --plan-out writes a dry run's plan, --plan applies it --------
PLAN_KIND = "ferry.import-plan"


def _plan_options(
    plan_in: Path | None, plan_out: Path | None, dry_run: bool, strategy: str, on_error: str
) -> tuple[str, str, str]:
    """(plan_digest, strategy, on_error) for --plan/--plan-out; usage errors for misuse."""
    if plan_out is not None and not dry_run:
        raise click.UsageError("--plan-out needs --dry-run (a plan is what a dry run returns)")
    if plan_in is None:
        return "", strategy, on_error
    if dry_run:
        raise click.UsageError("--plan applies a plan: leave out --dry-run")
    plan = _read_plan_header(plan_in)
    if not isinstance(plan, dict):
        plan = {}
    digest = plan.get("plan_digest")
    if plan.get("kind") != PLAN_KIND or not isinstance(digest, str) or len(digest) != 64:
        raise click.BadParameter(
            f"{plan_in} is not a plan file written by --plan-out (no plan_digest)",
            param_hint="--plan",
        )
    # The plan was made with these; the server refuses anything else.
    strategy = str(plan.get("strategy", strategy))
    on_error = str(plan.get("on_error", on_error))
    if strategy not in STRATEGIES or on_error not in ON_ERROR:
        raise click.BadParameter(f"{plan_in}: unknown strategy or on_error", param_hint="--plan")
    return digest, strategy, on_error


PLAN_END = "ferry.import-plan-end"


def _read_plan_header(plan_in: Path) -> Any:
    """A plan file's first line (JSON Lines); a whole-file JSON plan of earlier versions
    is read whole. The records after the header are checked against the end line."""
    try:
        with plan_in.open("rb") as f:
            first = f.readline()
            try:
                header = json.loads(first)
            except ValueError:
                header = json.loads(first + f.read())  # one JSON document (earlier files)
                return header
            if isinstance(header, dict) and header.get("records") is not None:
                _check_records(f, header, plan_in)
            return header
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise click.BadParameter(
            f"{plan_in} is not a plan file: {e}", param_hint="--plan"
        ) from None


def _check_records(f: IO[bytes], header: dict[str, Any], plan_in: Path) -> None:
    """The record lines are whole and as written: their count and sha256 are the end
    line's, which names the header's digest."""
    digest = hashlib.sha256()
    count = 0
    end: Any = None
    for line in f:
        if end is not None:
            raise ValueError("lines after the end line")
        if line.startswith(b'{"kind"'):
            end = json.loads(line)
            continue
        digest.update(line)
        count += 1
    if (
        not isinstance(end, dict)
        or end.get("kind") != PLAN_END
        or end.get("plan_digest") != header.get("plan_digest")
        or end.get("records") != count
        or end.get("records_sha256") != digest.hexdigest()
    ):
        raise click.BadParameter(
            f"{plan_in} is cut short or was edited: its records do not match its end line",
            param_hint="--plan",
        )


def _write_plan(out: Path, path: Path, r: ipb.ImportResult, stub: Any) -> None:
    """The plan file, JSON Lines: a header (what the dry run returned), every record's
    decision as the server kept it (DownloadPlan, streamed to the file as it arrives),
    and an end line with the records' count and sha256 (docs/merging.md)."""
    if r.status != ipb.IMPORT_STATUS_DRY_RUN:
        raise click.ClickException("the dry run failed: no plan was written")
    strategies = {v: k for k, v in STRATEGIES.items()}
    on_errors = {v: k for k, v in ON_ERROR.items()}
    plan = {
        "kind": PLAN_KIND,
        "plan_digest": r.plan_digest,
        "preview_id": r.id,
        "file": path.name,
        "source_sha256": r.source_sha256,
        "semester": r.semester,
        "entity": r.entity,
        "strategy": strategies.get(r.options.strategy, "update"),
        "on_error": on_errors.get(r.options.on_error, "abort"),
        "summaries": [{f: getattr(s, f) for f in ("entity", *_COUNTED)} for s in r.summaries],
        "sample_changes": [
            {
                "entity": c.entity,
                "natural_key": c.natural_key,
                "action": c.action,
                "changes": [
                    {"field": f.field, "before": f.old_value, "after": f.new_value}
                    for f in c.changes
                ],
            }
            for c in r.sample_changes
        ],
        "limits": [
            {
                "entity": lim.entity,
                "action": lim.action,
                "scope": lim.scope,
                "max_percent": lim.max_percent,
                "count": lim.count,
                "base": lim.base,
                "exceeded": lim.exceeded,
                "message": lim.message,
            }
            for lim in r.limits
        ],
        "records": "every record's decision follows, one a line",
    }
    part = out.with_name(out.name + ".part")
    digest = hashlib.sha256()
    expected = ""
    count = 0
    tail = b""
    try:
        with rpc_errors(), part.open("wb") as f:
            f.write(json.dumps(plan, ensure_ascii=False, separators=(",", ":")).encode() + b"\n")
            request = ipb.DownloadPlanRequest(import_id=r.id)
            for msg in stub.DownloadPlan(request, timeout=UPLOAD_TIMEOUT_SECONDS):
                data = msg.chunk.data
                f.write(data)
                digest.update(data)
                count += data.count(b"\n")
                tail = (tail + data)[-1:]
                expected = msg.chunk.sha256 or expected
            if expected and expected != digest.hexdigest():
                raise click.ClickException("the plan's download was damaged; try again")
            if count and tail != b"\n":
                raise click.ClickException("the plan's records were cut short; try again")
            end = {
                "kind": PLAN_END,
                "plan_digest": r.plan_digest,
                "records": count,
                "records_sha256": digest.hexdigest(),
            }
            f.write(json.dumps(end, separators=(",", ":")).encode() + b"\n")
    except BaseException:
        part.unlink(missing_ok=True)  # never half a plan
        raise
    part.replace(out)
    click.echo(
        f"plan {r.plan_digest} ({count:,} records) written to {out}; apply it with: "
        f"ferry import {path.name} --plan {out}"
    )


_COUNTED = ("created", "updated", "unchanged", "skipped", "unmatched", "deleted", "errors")


# ------------------------------------------------------------------------------------


def _requests_session(
    options: ipb.ImportOptions, path: Path, bar: Any
) -> Iterator[ipb.ImportSessionRequest]:
    yield ipb.ImportSessionRequest(options=options)
    for chunk in _chunks(path, bar):
        yield ipb.ImportSessionRequest(file_chunk=chunk)


def _requests_entities(
    options: ipb.ImportEntitiesOptions, path: Path, bar: Any
) -> Iterator[ipb.ImportEntitiesRequest]:
    yield ipb.ImportEntitiesRequest(options=options)
    for chunk in _chunks(path, bar):
        yield ipb.ImportEntitiesRequest(file_chunk=chunk)


_STATUS = {
    ipb.IMPORT_STATUS_COMPLETED: "completed",
    ipb.IMPORT_STATUS_FAILED: "failed",
    ipb.IMPORT_STATUS_DRY_RUN: "dry run (nothing changed)",
    ipb.IMPORT_STATUS_UNDONE: "undone",
}


def _when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    value: dt.datetime = ts.ToDatetime(tzinfo=dt.UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _print_result(r: ipb.ImportResult) -> None:
    columns = ["created", "updated", "unchanged", "skipped", "unmatched", "deleted", "errors"]
    # The three-way merge's and renames' counts, when some entity has them (issue 29).
    columns += [c for c in ("kept_local", "conflicts", "renamed")
                if any(getattr(s, c) for s in r.summaries)]  # fmt: skip
    rows = [[s.entity, *(f"{getattr(s, c):,}" for c in columns)] for s in r.summaries]
    if rows:
        table(rows, ["entity", *columns])
    what = f" of {r.entity}" if r.entity else (f" of {r.semester}" if r.semester else "")
    click.echo(
        f"import {r.id}{what}: {_STATUS.get(r.status, 'unknown')} "
        f"in {r.duration_seconds:.1f}s, {r.total_errors:,} error(s)"
    )
    for e in r.errors[:ERRORS_SHOWN]:
        field = f" {e.field}" if e.field else ""
        click.echo(f"  {e.entity} {e.natural_key}{field} (#{e.position}): {e.reason}")
    if r.total_errors > ERRORS_SHOWN:
        click.echo(f"  … and {r.total_errors - ERRORS_SHOWN:,} more")
    if r.has_rejected_file:
        click.echo(f"rejected records: ferry import rejected {r.id} -o rejected.json")
    for w in r.warnings:
        sample = f" (e.g. {', '.join(w.sample[:3])})" if w.sample else ""
        click.echo(f"note: {w.message}{sample}")
    _echo_empty_cell_rule(r)
    for lim in r.limits:
        click.echo(f"limit{' EXCEEDED' if lim.exceeded else ''}: {lim.message}")
    if r.status == ipb.IMPORT_STATUS_DRY_RUN:
        for c in r.sample_changes[:ERRORS_SHOWN]:
            diff = ", ".join(f"{f.field}: {f.old_value!r} -> {f.new_value!r}" for f in c.changes)
            click.echo(
                f"  would {c.action} {c.entity} {c.natural_key}" + (f": {diff}" if diff else "")
            )
    else:  # what a three-way merge kept and the conflicts it resolved are worth seeing
        for c in [c for c in r.sample_changes if c.action in ("keep_local", "conflict")][
            :ERRORS_SHOWN
        ]:
            diff = ", ".join(f"{f.field}: here {f.old_value!r}, source {f.new_value!r}"
                             for f in c.changes)  # fmt: skip
            click.echo(f"  {c.action.replace('_', ' ')} {c.entity} {c.natural_key}: {diff}")


@imports.command("rename")
@click.argument("entity", type=click.Choice(["students", "courses"]))
@click.argument("old_key")
@click.argument("new_key")
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@school_option
@click.pass_context
def import_rename(
    ctx: click.Context, entity: str, old_key: str, new_key: str, dry_run: bool
) -> None:
    """Change a record's key here (a student id, a course code), keeping its records.

    Bundles exported from here carry the rename, so other installations rename the
    record too instead of creating a second one. Undo it with `ferry import undo ID`.
    """
    app = load_app(ctx)
    stub = clients(app).imports()
    with rpc_errors():
        result = stub.RenameRecord(
            ipb.RenameRecordRequest(
                entity=entity, old_key=old_key, new_key=new_key, dry_run=dry_run
            ),
            timeout=120,
        ).result
    _print_result(result)


@imports.command("list")
@click.option("--page-size", type=click.IntRange(1, 200), default=50, show_default=True)
@click.option("--page-token", default="", help="From the previous page's last line.")
@school_option
@click.pass_context
def import_list(ctx: click.Context, page_size: int, page_token: str) -> None:
    """Recorded imports, newest first."""
    app = load_app(ctx)
    with rpc_errors():
        resp = (
            clients(app)
            .imports()
            .ListImports(ipb.ListImportsRequest(page_size=page_size, page_token=page_token))
        )
    if not resp.imports:
        click.echo("no imports yet")
        return
    rows = [
        [
            r.id,
            _STATUS.get(r.status, "unknown").split(" ")[0],
            _when(r.created_at),
            r.requested_by,
            r.entity or r.semester or "-",
            r.options.filename or "-",
            f"{sum(s.created + s.updated + s.deleted for s in r.summaries):,}",
            f"{r.total_errors:,}",
        ]
        for r in resp.imports
    ]
    table(rows, ["id", "status", "created", "by", "what", "file", "changed", "errors"])
    if resp.next_page_token:
        click.echo(f"more: ferry import list --page-token {resp.next_page_token}")


@imports.command("show")
@click.argument("import_id", metavar="ID")
@school_option
@click.pass_context
def import_show(ctx: click.Context, import_id: str) -> None:
    """One import's options, summary and errors."""
    app = load_app(ctx)
    with rpc_errors():
        r = clients(app).imports().GetImport(ipb.GetImportRequest(import_id=import_id)).result
    o = r.options
    click.echo(
        f"by {r.requested_by or '-'} at {_when(r.created_at)}, file {o.filename or '-'}, "
        f"strategy {ipb.MergeStrategy.Name(o.strategy).removeprefix('MERGE_STRATEGY_').lower()}, "
        f"sha256 {r.source_sha256 or '-'}"
        + (f", undone at {_when(r.undone_at)}" if r.status == ipb.IMPORT_STATUS_UNDONE else "")
    )
    if r.error_message:
        click.echo(f"error: {r.error_message}")
    _print_result(r)


@imports.command("undo")
@click.argument("import_id", metavar="ID")
@click.option("--force", is_flag=True, help="Undo even records changed after the import.")
@school_option
@click.pass_context
def import_undo(ctx: click.Context, import_id: str, force: bool) -> None:
    """Take an import back: delete what it created, restore what it changed."""
    app = load_app(ctx)
    with rpc_errors():
        r = (
            clients(app)
            .imports()
            .UndoImport(ipb.UndoImportRequest(import_id=import_id, force=force))
            .result
        )
    _print_result(r)


@imports.command("rejected")
@click.argument("import_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True)
@school_option
@click.pass_context
def import_rejected(ctx: click.Context, import_id: str, output: Path) -> None:
    """Save the records a skip_invalid import rejected, as a re-importable bundle."""
    app = load_app(ctx)
    digest = hashlib.sha256()
    expected = ""
    part = output.with_name(output.name + ".part")
    try:
        with rpc_errors(), part.open("wb") as f:
            for msg in (
                clients(app)
                .imports()
                .DownloadRejected(
                    ipb.DownloadRejectedRequest(import_id=import_id), timeout=UPLOAD_TIMEOUT_SECONDS
                )
            ):
                f.write(msg.chunk.data)
                digest.update(msg.chunk.data)
                expected = msg.chunk.sha256 or expected
    except BaseException:
        part.unlink(missing_ok=True)  # never leave half a file behind
        raise
    if expected and expected != digest.hexdigest():
        part.unlink()
        raise click.ClickException("the download was damaged (sha256 mismatch); try again")
    part.replace(output)
    click.echo(f"saved {output}")
