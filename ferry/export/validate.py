"""What StartExport checks before a job exists: bad input is refused naming the field and
changes nothing; a valid request becomes the NewJob the queue stores."""

from __future__ import annotations

import datetime as dt

from ferry.addresses import check_recipients
from ferry.app import App
from ferry.bundle.stream import snapshot
from ferry.errors import InvalidArgument
from ferry.export import store
from ferry.export.query import ExportRequest, plan_export
from ferry.export.runner import tabular_format
from ferry.v1 import export_pb2 as pb

TEXT_FILTERS = ("status", "search", "semester", "course_code", "date_from", "date_to")
MAX_KEY = 200


def new_job(app: App, request: pb.StartExportRequest, requested_by: str = "") -> store.NewJob:
    """Everything StartExport checks before a job exists (bad input changes nothing)."""
    if not request.export_type:
        raise InvalidArgument("export_type is required", field="export_type")
    if not request.format:
        raise InvalidArgument("format is required (e.g. csv)", field="format")
    fmt = tabular_format(request.format)
    if len(request.idempotency_key) > MAX_KEY:
        raise InvalidArgument(
            f"idempotency_key is longer than {MAX_KEY} characters", field="idempotency_key"
        )
    notify = check_recipients(list(request.notify), "notify")  # before any job exists
    filters = filters_dict(request.filters)
    ds = app.dataset()
    req = ExportRequest(
        request.export_type,
        filters,
        list(request.fields),
        request.limit,
        request.include_deleted,
    )
    with snapshot(app.engine) as conn:
        plan_export(conn, ds, req, app.settings.export.max_rows)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    return store.NewJob(
        export_type=request.export_type,
        format=request.format,
        dataset=ds.name,
        filters=filters,
        fields=list(request.fields),
        limit=request.limit,
        include_deleted=request.include_deleted,
        notify=notify,
        idempotency_key=request.idempotency_key,
        requested_by=requested_by,
        filename=f"{request.export_type}_{stamp}.{fmt.extension}",
        extension=fmt.extension,
    )


def filters_dict(f: pb.ExportFilters) -> dict[str, str]:
    """ExportFilters as {name: text}, leaving out empty ones (updated_since as ISO-8601)."""
    out = {name: getattr(f, name) for name in TEXT_FILTERS if getattr(f, name)}
    if f.HasField("updated_since"):
        out["updated_since"] = f.updated_since.ToDatetime(dt.UTC).isoformat()
    return out
