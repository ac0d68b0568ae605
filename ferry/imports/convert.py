"""The contract's import messages <-> the merge engine's options and outcomes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from ferry.errors import InvalidArgument
from ferry.merge import ImportOutcome, MergeOptions, OnError, RecordError, Status, Strategy
from ferry.v1 import import_pb2 as ipb

STRATEGIES = {
    ipb.MERGE_STRATEGY_UNSPECIFIED: Strategy.UPDATE,
    ipb.MERGE_STRATEGY_UPDATE: Strategy.UPDATE,
    ipb.MERGE_STRATEGY_SKIP: Strategy.SKIP,
    ipb.MERGE_STRATEGY_UPDATE_ONLY: Strategy.UPDATE_ONLY,
    ipb.MERGE_STRATEGY_REPLACE: Strategy.REPLACE,
}
STRATEGY_PROTO = {
    Strategy.UPDATE: ipb.MERGE_STRATEGY_UPDATE,
    Strategy.SKIP: ipb.MERGE_STRATEGY_SKIP,
    Strategy.UPDATE_ONLY: ipb.MERGE_STRATEGY_UPDATE_ONLY,
    Strategy.REPLACE: ipb.MERGE_STRATEGY_REPLACE,
}
ON_ERROR = {
    ipb.ON_ERROR_UNSPECIFIED: OnError.ABORT,
    ipb.ON_ERROR_ABORT: OnError.ABORT,
    ipb.ON_ERROR_SKIP_INVALID: OnError.SKIP_INVALID,
}
ON_ERROR_PROTO = {
    OnError.ABORT: ipb.ON_ERROR_ABORT,
    OnError.SKIP_INVALID: ipb.ON_ERROR_SKIP_INVALID,
}
STATUS_PROTO = {
    Status.COMPLETED: ipb.IMPORT_STATUS_COMPLETED,
    Status.FAILED: ipb.IMPORT_STATUS_FAILED,
    Status.DRY_RUN: ipb.IMPORT_STATUS_DRY_RUN,
    Status.UNDONE: ipb.IMPORT_STATUS_UNDONE,
}
# Record errors quoted in the INVALID_ARGUMENT message of a failed import.
ERRORS_IN_MESSAGE = 5
T = TypeVar("T")


def _enum(table: Mapping[Any, T], value: int, field: str) -> T:
    try:
        return table[value]
    except KeyError:
        raise InvalidArgument(f"unknown value {value} for {field}", field=field) from None


def merge_options(opts: ipb.ImportOptions) -> MergeOptions:
    """MergeOptions for ImportSession options (UNSPECIFIED enums are the defaults)."""
    strategy = _enum(STRATEGIES, opts.strategy, "options.strategy")
    on_error = _enum(ON_ERROR, opts.on_error, "options.on_error")
    return MergeOptions(
        strategy=strategy,
        dry_run=opts.dry_run,
        on_error=on_error,
        idempotency_key=opts.idempotency_key,
        filename=opts.filename,
        bundle_format=opts.bundle_format,
        dataset=opts.dataset or "school",
        backup_before=opts.backup_before if opts.HasField("backup_before") else None,
        plan_digest=opts.plan_digest,
        allow_mass_change=opts.allow_mass_change,
        plan_records=opts.plan_records and opts.dry_run,
        school=opts.school,
    )


def entity_options(
    opts: ipb.ImportEntitiesOptions, fmt: str, filename: str, dataset: str
) -> MergeOptions:
    """MergeOptions for ImportEntities options; `fmt` is the tabular format used."""
    strategy = _enum(STRATEGIES, opts.strategy, "options.strategy")
    on_error = _enum(ON_ERROR, opts.on_error, "options.on_error")
    return MergeOptions(
        strategy=strategy,
        dry_run=opts.dry_run,
        on_error=on_error,
        idempotency_key=opts.idempotency_key,
        filename=opts.filename or filename,
        bundle_format=fmt,
        dataset=dataset,
        plan_digest=opts.plan_digest,
        allow_mass_change=opts.allow_mass_change,
        plan_records=opts.plan_records and opts.dry_run,
    )


def _stamp(target: Timestamp, value: dt.datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))


def result_proto(o: ImportOutcome) -> ipb.ImportResult:
    """The ImportResult message for an engine outcome."""
    opts = o.options
    out = ipb.ImportResult(
        id=o.id,
        status=STATUS_PROTO.get(Status(o.status), ipb.IMPORT_STATUS_UNSPECIFIED),
        options=ipb.ImportOptions(
            strategy=STRATEGY_PROTO[Strategy(opts.strategy)],
            dry_run=opts.dry_run,
            on_error=ON_ERROR_PROTO[OnError(opts.on_error)],
            idempotency_key=opts.idempotency_key,
            filename=opts.filename,
            bundle_format=opts.bundle_format,
            dataset=opts.dataset,
            plan_digest=opts.plan_digest,
            allow_mass_change=opts.allow_mass_change,
            plan_records=opts.plan_records,
        ),
        entity=o.entity,
        requested_by=o.requested_by,
        source_sha256=o.source_sha256,
        semester=o.semester,
        total_errors=o.total_errors,
        has_rejected_file=o.has_rejected_file,
        duration_seconds=o.duration_seconds,
        error_message=o.error_message,
        error_reason=o.error_reason,
        error_metadata=o.error_details,
        backup_key=o.backup_key,
        plan_digest=o.plan_digest,
        has_plan_records=o.plan_records,
    )
    if opts.backup_before is not None:
        out.options.backup_before = opts.backup_before
    for s in o.summaries:
        out.summaries.add(
            entity=s.entity,
            created=s.created,
            updated=s.updated,
            unchanged=s.unchanged,
            skipped=s.skipped,
            unmatched=s.unmatched,
            deleted=s.deleted,
            errors=s.errors,
            kept_local=s.kept_local,
            conflicts=s.conflicts,
            renamed=s.renamed,
        )
    for e in o.errors:
        out.errors.add(
            entity=e.entity,
            natural_key=e.natural_key,
            field=e.field,
            reason=e.reason,
            position=e.position,
            reason_code=e.code,
            details=e.details,
        )
    for c in o.sample_changes:
        change = out.sample_changes.add(entity=c.entity, natural_key=c.natural_key, action=c.action)
        for name, old, new in c.changes:
            change.changes.add(field=name, old_value=old, new_value=new)
    for w in o.warnings:
        out.warnings.add(
            kind=w.kind,
            entity=w.entity,
            field=w.field,
            count=w.count,
            sample=w.sample,
            message=w.message,
            reason=w.reason,
        )
    for lim in o.limits:
        out.limits.add(
            entity=lim.entity,
            action=lim.action,
            scope=lim.scope,
            max_percent=lim.max_percent,
            count=lim.count,
            base=lim.base,
            exceeded=lim.exceeded,
            message=lim.message,
        )
    if o.approval:
        a = o.approval
        out.approval.state = a.get("state", "")
        out.approval.decided_by = a.get("decided_by", "")
        out.approval.reason = a.get("reason", "")
        for name in ("expires_at", "decided_at"):
            if a.get(name):
                _stamp(getattr(out.approval, name), dt.datetime.fromisoformat(a[name]))
    _stamp(out.created_at, o.created_at)
    _stamp(out.finished_at, o.finished_at)
    _stamp(out.undone_at, o.undone_at)
    return out


def failure(o: ImportOutcome, headers: Mapping[str, str] | None = None) -> InvalidArgument | None:
    """For a FAILED import: INVALID_ARGUMENT quoting the first errors (entity, key, field,
    reason) and the import id, whose full result GetImport returns. None otherwise.

    With `headers` (field -> file column, for csv/xlsx) errors name the row and column
    as a spreadsheet shows them (the header is row 1). A dry run or a skip_invalid run
    that found errors is not a failure: its result lists them and the caller decides.
    """
    if Status(o.status) is not Status.FAILED:
        return None
    quoted = [_quote(e, headers) for e in o.errors[:ERRORS_IN_MESSAGE]]
    if quoted:
        more = o.total_errors - len(quoted)
        text = (
            f"import {o.id} failed, nothing was changed: {o.total_errors} invalid record(s): "
            + "; ".join(quoted)
            + (f"; and {more} more" if more > 0 else "")
        )
    else:
        text = f"import {o.id} failed, nothing was changed: {o.error_message or 'unknown error'}"
    first = o.errors[0] if o.errors else None
    where = ""
    if first is not None:
        where = f"{first.entity}[{first.natural_key}]" + (f".{first.field}" if first.field else "")
    return InvalidArgument(text + f" (GetImport {o.id} has the full result)", field=where)


def _quote(e: RecordError, headers: Mapping[str, str] | None) -> str:
    key = e.natural_key or "(no key)"
    if headers is not None and e.position:
        column = f", column {headers.get(e.field, e.field)!r}" if e.field else ""
        return f"row {e.position + 1}{column}: {e.reason} ({e.entity} {key})"
    field = f" field {e.field}" if e.field else ""
    return f"{e.entity} {key}{field}: {e.reason}"
