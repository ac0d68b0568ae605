"""What StartExport checks before a job exists: bad input is refused naming the field and
changes nothing; a valid request becomes the NewJob the queue stores."""

from __future__ import annotations

import datetime as dt
import re

from ferry.addresses import check_recipients
from ferry.app import App
from ferry.bundle.stream import snapshot
from ferry.errors import InvalidArgument
from ferry.export_jobs import store
from ferry.export_jobs.query import ExportRequest, plan_export
from ferry.export_jobs.runner import tabular_format
from ferry.tabular.labels import check_language
from ferry.v1 import export_pb2 as pb

TEXT_FILTERS = ("status", "search", "semester", "course_code", "date_from", "date_to")
MAX_KEY = 200
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # what a file-name part keeps


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
    language = check_language(request.language)
    notify = check_recipients(list(request.notify), "notify")  # before any job exists
    filters = filters_dict(request.filters)
    ds = app.dataset()
    req = ExportRequest(
        request.export_type,
        filters,
        list(request.fields),
        request.limit,
        request.include_deleted,
        language=language,
    )
    with snapshot(app.engine) as conn:
        plan_export(conn, ds, req, app.settings.export.max_rows)
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
        filename=export_filename(request.export_type, filters, language, fmt.extension),
        extension=fmt.extension,
        language=language,
    )


def export_filename(export_type: str, filters: dict[str, str], language: str, ext: str) -> str:
    """`<type>_<semester or all>[_<language>].<ext>` (grades_2026-fall_el.csv): what the file
    holds and the language it is written in, as a person saving it expects."""
    parts = [export_type, filters.get("semester") or "all", language]
    return "_".join(_UNSAFE.sub("_", p).strip("._") or "x" for p in parts if p) + f".{ext}"


def filters_dict(f: pb.ExportFilters) -> dict[str, str]:
    """ExportFilters as {name: text}, leaving out empty ones (updated_since as ISO-8601)."""
    out = {name: getattr(f, name) for name in TEXT_FILTERS if getattr(f, name)}
    if f.HasField("updated_since"):
        out["updated_since"] = f.updated_since.ToDatetime(dt.UTC).isoformat()
    return out
